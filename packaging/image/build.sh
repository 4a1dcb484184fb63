#!/usr/bin/env bash
# build.sh: the golden image of prewarm-pool (`make image`): a bootable
# Debian 12 (bookworm) with systemd, the project's prewarm-agent .deb
# installed and enabled, no cloud-init and no SSH host keys (each VM makes
# its own at first boot), as an ext4 file system in a qcow2 file, plus the
# image's own kernel and initrd for direct kernel boot.
#
# Output (under $PREWARM_IMAGE_DIR, default .cache/image in the repository,
# git-ignored):
#   debian-12-prewarm.qcow2   the root file system (ext4 on the whole disk, /dev/vda)
#   vmlinuz, initrd.img       the image's kernel and initrd
#   cmdline                   the kernel command line the image is made for
#   image.json                the paths, sizes, the inputs' key and the build time
# The outputs are symlinks into a folder named by a key of every input
# (suite, mirror, package list, this script, the agent .deb): a rerun with
# the same inputs does nothing; the debootstrap tree is cached as a tarball
# keyed by suite, mirror and packages, so a new .deb re-bakes in seconds.
#
# Run as root on Debian 12 (debootstrap, chroot, mkfs.ext4 -d, qemu-img).
# Environment:
#   PREWARM_IMAGE_DIR=DIR    the cache and output folder
#   PREWARM_SKIP_BUILD=1     use the .deb already in dist/ (else: make build + packaging/build.sh)
#   PREWARM_DEBIAN_MIRROR=U  Debian mirror (default: from /etc/apt/sources.list*)
#   PREWARM_IMAGE_SIZE=2G    the file system's size (the qcow2 stays sparse)
set -Eeuo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${PREWARM_IMAGE_DIR:-$repo/.cache/image}
suite=bookworm
size=${PREWARM_IMAGE_SIZE:-2G}
# systemd as init, udev for the virtio devices, sudo and tzdata for the
# documents the agent applies, sshd for the users it creates, and Debian's
# kernel. ifupdown and isc-dhcp-client stay installed (an operator may go
# back to them) but nothing runs them: the agent's built-in DHCP client owns
# eth0 (below).
include=systemd-sysv,dbus,udev,kmod,iproute2,ifupdown,isc-dhcp-client,sudo,tzdata,openssh-server,linux-image-amd64,initramfs-tools,zstd
# no_timer_check: under TCG on a loaded host the kernel's early IO-APIC
# timer check can miss its ticks and panic ("IO-APIC + timer doesn't
# work!"; seen in a cold boot of make bench-pool at load average 14).
cmdline='root=/dev/vda rw console=ttyS0 quiet net.ifnames=0 biosdevname=0 systemd.show_status=0 rd.udev.log_level=3 no_timer_check'
t0=${EPOCHREALTIME/./}

say() {
	local d=$(((${EPOCHREALTIME/./} - t0) / 100000))
	printf '[image %4d.%ds] %s\n' $((d / 10)) $((d % 10)) "$*"
}
fail() {
	say "FAIL: $*"
	exit 1
}
[[ $(id -u) == 0 ]] || {
	echo "packaging/image/build.sh: run as root" >&2
	exit 1
}

# shellcheck source=packaging/lib.sh
. "$repo/packaging/lib.sh"
ensure_commands debootstrap:debootstrap mkfs.ext4:e2fsprogs qemu-img:qemu-utils zstd:zstd jq:jq busybox:busybox-static cpio:cpio

# The Debian mirror this machine's apt uses for $suite (deb822 .sources or
# one-line .list), else deb.debian.org (as packaging/test-image.sh).
debian_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk -v s="$suite" '
			/^[[:space:]]*$/ { if (ok && uri != "" && deb) { print uri; exit } ok = 0; uri = ""; deb = 0; next }
			tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
			END { if (ok && uri != "" && deb) print uri }' "$f"
	done
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		sed -E 's/\[[^]]*\][[:space:]]*//' | awk -v s="$suite" '$1 == "deb" && $3 == s { print $2 }'
	echo http://deb.debian.org/debian
}
mirror=${PREWARM_DEBIAN_MIRROR:-$(debian_mirror | awk "NR == 1")}

# ---------------------------------------------------------------- the .deb
if [[ ${PREWARM_SKIP_BUILD:-} != 1 ]]; then
	# make build + packaging/build.sh, not make package: that also builds
	# the MSI, which needs the Windows tool chain.
	say "building the packages (make build, packaging/build.sh)"
	mkdir -p "$out"
	{ make -C "$repo" --no-print-directory build && LINTIAN=0 bash "$repo/packaging/build.sh"; } >"$out/package.log" 2>&1 || {
		tail -n 30 "$out/package.log"
		fail "building the .deb"
	}
fi
# shellcheck disable=SC2012 # our own package file names
agent_deb=$(ls -t "$repo"/dist/prewarm-agent_*.deb 2>/dev/null | head -n 1)
[[ -n $agent_deb ]] || fail "no prewarm-agent .deb in $repo/dist (make package)"

# ---------------------------------------------------------------- keys
root_key=$(printf '%s %s %s minbase' "$suite" "$mirror" "$include" | sha256sum | cut -c1-12)
# The .deb's contents, not its name or mtime: two builds of one commit
# give the same key only when they give the same package.
deb_sum=$(dpkg-deb --fsys-tarfile "$agent_deb" | sha256sum | cut -c1-16)
image_key=$(printf '%s %s %s %s' "$root_key" "$deb_sum" "$(sha256sum <"$0")" "$size" | sha256sum | cut -c1-12)
dir=$out/$image_key
if [[ -f $dir/image.json ]]; then
	say "up to date: $dir ($(jq -r .deb "$dir/image.json"))"
else
	mkdir -p "$out"
	work=$(mktemp -d "$out/.build.XXXXXX")
	trap 'rc=$?; awk -v w="$work" "index(\$2, w) == 1 { print \$2 }" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done; rm -rf "$work"; exit $rc' EXIT
	root=$work/root
	mkdir -p "$root"

	# ------------------------------------------------------------ root
	tarball=$out/root-$suite-$root_key.tar.zst
	if [[ -f $tarball ]]; then
		say "unpacking the cached root ${tarball##*/}"
		tar --zstd -xpf "$tarball" -C "$root" --numeric-owner
	else
		say "debootstrap $suite from $mirror (minbase +$include)"
		timeout 900 debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
			>"$work/debootstrap.log" 2>&1 || {
			tail -n 20 "$work/debootstrap.log"
			fail "debootstrap"
		}
		rm -f "$root"/var/cache/apt/archives/*.deb
		tar --zstd -cpf "$tarball.tmp.$$" -C "$root" --numeric-owner . && mv "$tarball.tmp.$$" "$tarball"
		say "cached the root as ${tarball##*/} ($(du -h "$tarball" | cut -f1))"
	fi

	in_root() { chroot "$root" "$@"; }
	mount -t proc proc "$root/proc"

	# ------------------------------------------------------------ bake
	say "installing ${agent_deb##*/}"
	cp "$agent_deb" "$root/tmp/"
	in_root dpkg -i "/tmp/${agent_deb##*/}" >"$work/dpkg.log" 2>&1 || {
		cat "$work/dpkg.log"
		fail "dpkg -i prewarm-agent"
	}
	rm -f "$root/tmp/${agent_deb##*/}"
	[[ -L $root/etc/systemd/system/multi-user.target.wants/prewarm-agent.service ]] ||
		fail "the package did not enable prewarm-agent.service"
	[[ ! -e $root/usr/bin/cloud-init ]] || fail "cloud-init is in the image"

	echo golden >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	: >"$root/etc/resolv.conf"
	printf '/dev/vda\t/\text4\trw,noatime,errors=remount-ro\t0\t1\n' >"$root/etc/fstab"
	# eth0 by DHCP through the agent's built-in client, not ifupdown's
	# dhclient: the agent brings eth0 up and gets its first lease when it
	# starts (dhcp.Renewer.AcquireAtStart), renews at T1, and on a claim's
	# link bounce runs one DORA exchange in-process (netlink, no scripts).
	# dhclient's renewal was most of a claim: restarted by the agent, it
	# asked for the old pool address first (INIT-REBOOT), took the tenant
	# network's NAK, then DISCOVER, with dhclient-script's forks under TCG,
	# 1.8 s of a 2.9 s claim (docs/pool.md).
	printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' >"$root/etc/network/interfaces"
	rm -f "$root/etc/network/interfaces.d/eth0"
	in_root ifquery --allow hotplug -l 2>/dev/null | grep -qx eth0 && fail "ifupdown still lists eth0"
	sed -i -e 's/^PREWARM_AGENT_OPTS=.*/PREWARM_AGENT_OPTS="--dhcp-client=builtin --interfaces=eth0"/' "$root/etc/default/prewarm-agent"
	grep -qx 'PREWARM_AGENT_OPTS="--dhcp-client=builtin --interfaces=eth0"' "$root/etc/default/prewarm-agent" ||
		fail "could not set the agent's options in /etc/default/prewarm-agent"
	# The agent starts once udev has eth0 (network.target does not wait
	# for devices), so its first DORA does not miss the NIC.
	mkdir -p "$root/etc/systemd/system/prewarm-agent.service.d"
	printf '[Unit]\nWants=sys-subsystem-net-devices-eth0.device\nAfter=sys-subsystem-net-devices-eth0.device\n' \
		>"$root/etc/systemd/system/prewarm-agent.service.d/eth0.conf"

	# Every clone gets its own machine id (first boot) and its own SSH host
	# keys: none in the image, a unit makes them before sshd starts. Ed25519
	# only: RSA takes tens of seconds under TCG, ECDSA seconds.
	: >"$root/etc/machine-id"
	rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
	printf 'HostKey /etc/ssh/ssh_host_ed25519_key\n' >"$root/etc/ssh/sshd_config.d/prewarm-hostkeys.conf"
	cat >"$root/etc/systemd/system/prewarm-ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate this VM's own SSH host keys (none ship in the golden image)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
RemainAfterExit=yes

[Install]
WantedBy=ssh.service
UNIT
	in_root systemctl enable prewarm-ssh-hostkeys.service >/dev/null 2>&1
	[[ -L $root/etc/systemd/system/ssh.service.wants/prewarm-ssh-hostkeys.service ]] ||
		fail "prewarm-ssh-hostkeys.service not enabled"

	# Boot fast and quietly: nothing waits for the network to be online, no
	# periodic jobs during a benchmark, no first-boot prompts.
	# lo is systemd's own; eth0 is ifup@eth0's (udev hotplug), so neither
	# networking.service nor its udev settle runs. No module a virtio guest
	# without storage stacks or graphics uses is probed at boot, no debug
	# file systems are mounted, and the journal stays in memory (no flush).
	for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer \
		systemd-networkd-wait-online.service ifupdown-wait-online.service networking.service ifupdown-pre.service \
		systemd-firstboot.service e2scrub_reap.service systemd-journal-flush.service \
		modprobe@configfs.service modprobe@dm_mod.service modprobe@drm.service modprobe@efi_pstore.service \
		modprobe@fuse.service modprobe@loop.service \
		sys-kernel-tracing.mount sys-kernel-debug.mount sys-kernel-config.mount dev-hugepages.mount \
		sys-fs-fuse-connections.mount getty@tty1.service; do
		ln -sf /dev/null "$root/etc/systemd/system/$u"
	done
	mkdir -p "$root/etc/systemd/journald.conf.d"
	printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' >"$root/etc/systemd/journald.conf.d/prewarm.conf"
	mkdir -p "$root/etc/systemd/system.conf.d"
	printf '[Manager]\nShowStatus=no\nDefaultTimeoutStartSec=30s\n' >"$root/etc/systemd/system.conf.d/prewarm.conf"
	# root has no password: the serial console is for the host's eyes
	# (virsh console), logins go through the users the document creates.
	in_root passwd -l root >/dev/null

	# The initrd: busybox and the eleven modules that mount /dev/vda
	# (virtio PCI + block, ext4 and what it needs), a 20-line init, no udev:
	# under TCG initramfs-tools' udev stage alone takes seconds. The image
	# keeps initramfs-tools for its own kernel updates.
	kver=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
	[[ -n $kver ]] || fail "no kernel in the root"
	busybox=$(command -v busybox || true)
	[[ -n $busybox ]] && ! ldd "$busybox" >/dev/null 2>&1 ||
		fail "a static busybox is needed for the initrd (apt-get install busybox-static)"
	say "initrd for $kver (busybox, virtio + ext4 modules)"
	ird=$work/initrd
	mkdir -p "$ird"/{bin,dev,proc,sys,root,lib/modules}
	cp "$busybox" "$ird/bin/busybox"
	mods="virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk crc16 mbcache jbd2 crc32c_generic ext4"
	for m in $mods; do
		f=$(find "$root/lib/modules/$kver/kernel" -name "$m.ko*" | head -n 1)
		[[ -n $f ]] || fail "initrd: no module $m for $kver"
		case $f in
		*.ko.xz) xz -dc "$f" >"$ird/lib/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$ird/lib/modules/$m.ko" ;;
		*) cp "$f" "$ird/lib/modules/$m.ko" ;;
		esac
	done
	cat >"$ird/init" <<INIT
#!/bin/busybox sh
b=/bin/busybox
\$b mount -t devtmpfs devtmpfs /dev
\$b mount -t proc proc /proc
for m in $mods; do
	\$b insmod /lib/modules/\$m.ko || echo "initrd: insmod \$m failed"
done
i=0
while [ ! -b /dev/vda ] && [ \$i -lt 1000 ]; do \$b usleep 10000; i=\$((i + 1)); done
if ! \$b mount -t ext4 -o rw,noatime /dev/vda /root; then
	echo "initrd: cannot mount /dev/vda"
	exec \$b sh
fi
\$b umount /proc
\$b mount --move /dev /root/dev
exec \$b switch_root /root /sbin/init
INIT
	chmod 0755 "$ird/init"
	mkdir -p "$work/out"
	(cd "$ird" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$work/out/initrd.img"
	cp "$root/boot/vmlinuz-$kver" "$work/out/vmlinuz"
	chmod 0644 "$work/out/vmlinuz" "$work/out/initrd.img"

	# A smaller image: no drivers a virtio guest never loads, no docs but
	# the copyright files.
	for d in sound drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/staging \
		drivers/bluetooth drivers/isdn drivers/iio drivers/hid drivers/input/touchscreen drivers/usb/gadget \
		net/bluetooth net/mac80211 net/wireless; do
		rm -rf "$root/lib/modules/$kver/kernel/$d"
	done
	in_root depmod "$kver"
	find "$root/usr/share/doc" -type f ! -name copyright -delete
	rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*

	# No leftovers from the build in the image.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/tmp/*
	umount "$root/proc"

	# ------------------------------------------------------------ disk
	say "mkfs.ext4 -d ($size) and qemu-img convert"
	mkfs.ext4 -q -F -L prewarm-root -d "$root" "$work/root.raw" "$size"
	qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$work/root.raw" "$work/out/debian-12-prewarm.qcow2"
	rm -f "$work/root.raw"
	printf '%s\n' "$cmdline" >"$work/out/cmdline"
	secs=$(((${EPOCHREALTIME/./} - t0) / 1000000))
	jq -n --arg key "$image_key" --arg deb "${agent_deb##*/}" --arg kernel "$kver" \
		--arg cmdline "$cmdline" --arg size "$size" --argjson secs "$secs" \
		--argjson bytes "$(stat -c %s "$work/out/debian-12-prewarm.qcow2")" \
		'{key: $key, deb: $deb, kernel: $kernel, cmdline: $cmdline, fs_size: $size,
		  qcow2_bytes: $bytes, build_seconds: $secs}' >"$work/out/image.json"
	rm -rf "$dir"
	mv "$work/out" "$dir"
	say "built $dir in ${secs}s"
fi

# The stable names point at the current key's files.
for f in debian-12-prewarm.qcow2 vmlinuz initrd.img cmdline image.json; do
	ln -sfn "$image_key/$f" "$out/$f"
done
# Old keys' images go, but not the two before this one: running VMs and
# tests may still boot overlays on them (the tarball stays too).
# shellcheck disable=SC2012 # our own directory names
ls -dt "$out"/???????????? 2>/dev/null | { grep -v "/$image_key\$" || true; } | tail -n +3 | xargs -r rm -rf
say "image: $out/debian-12-prewarm.qcow2 ($(du -h --apparent-size "$dir/debian-12-prewarm.qcow2" | cut -f1)), kernel $out/vmlinuz, initrd $out/initrd.img"
