#!/usr/bin/env bash
# test-image.sh: prove that a golden image with the prewarm-agent .deb baked
# in provisions itself.
#
# It builds the packages (make package), makes a minimal Debian root with
# debootstrap (cached as a tarball under /var/cache/prewarm-ci), installs the
# fresh .deb into it the way an image builder does (dpkg -i in a chroot),
# and boots it with systemd as PID 1 (systemd-nspawn --boot) in a network
# namespace whose veth leads to a "host" namespace running prewarm-imds (from
# the fresh prewarm-imds .deb) and dnsmasq. Then it shows, awaiting each
# report on the IMDS admin socket (prewarm-imds status --wait), never with
# sleeps:
#
#   1. the unit was enabled by the package and started by itself;
#   2. it reports partial-ready for the placeholder config published before
#      boot, with that config's host name applied;
#   3. a host-side link bounce makes it renew DHCP (event dhcp-renewed);
#   4. it reports provisioned for the final config, and the host name, time
#      zone and a user (groups, sudo rule, SSH key, hashed password) are in
#      the image, the plaintext password in no log, report or state file;
#   5. reinstalling the .deb in the running container (the upgrade path)
#      restarts the agent once, keeps its state and the DHCP client, and
#      re-reports nothing;
#   6. after a reboot of the container (poweroff, boot the same root again)
#      it starts, keeps its state and reports neither partial-ready nor
#      provisioned again for the same generations;
#   7. purging the package stops the agent and removes its state and logs;
#   8. the prewarm-imds package, installed in the running container, starts
#      its sandboxed unit with the admin socket in group prewarm-admin.
#
# It also installs and purges the prewarm-imds .deb in a copy of the root
# (sysusers, enable, purge) and checks both units with systemd-analyze
# verify.
#
# Run as root on Debian 12. It installs the Debian packages it needs. It
# touches the network only inside the namespaces it creates (pwp-<pid>-h,
# pwp-<pid>-g) and removes them, its processes and its files on exit.
#
# Environment:
#   PREWARM_SKIP_BUILD=1     use the packages already in dist/
#   PREWARM_CI_CACHE=DIR     where the debootstrap tarball is kept
#                            (default /var/cache/prewarm-ci; "" for no cache)
#   PREWARM_DEBIAN_MIRROR=U  Debian mirror (default: from /etc/apt/sources.list*)
#   KEEP=1                   keep the work directory (logs, root) on exit
set -Eeuo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
id=pwp-$$
suite=bookworm
include=systemd-sysv,dbus,iproute2,ifupdown,isc-dhcp-client,sudo,tzdata
cache=${PREWARM_CI_CACHE-/var/cache/prewarm-ci}
instance=pool-vm-1
t0=${EPOCHREALTIME/./}

say() {
	local d=$(((${EPOCHREALTIME/./} - t0) / 100000))
	printf '[%4d.%ds] %s\n' $((d / 10)) $((d % 10)) "$*"
}
fail() {
	say "FAIL: $*"
	exit 1
}

[[ $(id -u) == 0 ]] || {
	echo "test-image.sh: run as root" >&2
	exit 1
}

# ---------------------------------------------------------------- tools
need=()
for c in debootstrap:debootstrap systemd-nspawn:systemd-container dnsmasq:dnsmasq-base \
	zstd:zstd jq:jq nsenter:util-linux ip:iproute2 make:make; do
	command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
if ((${#need[@]})); then
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	timeout 300 apt-get update -qq
	timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- cleanup
work=$(mktemp -d "/var/tmp/$id.XXXXXX")
root=$work/root
hns=$id-h
gns=$id-g
nspawn_pid='' dnsmasq_pid='' imds_pid='' cpid=''

stop_pid() { # pid: TERM, wait up to 10 s, then KILL
	local pid=$1
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	timeout 10 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	set +e
	trap '' PIPE # a closed stdout (| head) must not stop the cleanup
	trap - ERR
	if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
		[[ -n $cpid ]] && timeout 10 nsenter -t "$cpid" -a systemctl poweroff --no-block 2>/dev/null
		timeout 30 tail --pid="$nspawn_pid" -f /dev/null
		stop_pid "$nspawn_pid"
	fi
	stop_pid "$imds_pid"
	stop_pid "$dnsmasq_pid"
	ip netns del "$gns" 2>/dev/null
	ip netns del "$hns" 2>/dev/null
	# Nothing should be mounted below $work once nspawn is gone; be sure
	# before deleting.
	awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
		while read -r m; do umount -l "$m"; done
	if ((rc != 0)); then
		for f in "$work"/*.log; do
			[[ -s $f ]] || continue
			echo "----- last lines of $f"
			tail -n 40 "$f"
		done
	fi
	if [[ ${KEEP:-} == 1 ]]; then
		echo "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'say "FAIL: line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- packages
if [[ ${PREWARM_SKIP_BUILD:-} != 1 ]]; then
	say "building the packages (make package)"
	make -C "$repo" --no-print-directory package >"$work/build.log" 2>&1 || {
		tail -n 30 "$work/build.log"
		fail "make package"
	}
	grep -E '^(created package|lintian)' "$work/build.log" | sed 's/^/    /'
fi
# shellcheck disable=SC2012 # our own package file names
newest() { ls -t "$@" 2>/dev/null | head -n 1; }
agent_deb=$(newest "$repo"/dist/prewarm-agent_*.deb)
imds_deb=$(newest "$repo"/dist/prewarm-imds_*.deb)
[[ -n $agent_deb && -n $imds_deb ]] || fail "no .deb in $repo/dist"
say "packages: ${agent_deb##*/} ${imds_deb##*/}"

# ---------------------------------------------------------------- root
# The Debian mirror this machine's apt uses for $suite (deb822 .sources or
# one-line .list), else deb.debian.org.
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

key=$(printf '%s %s %s minbase' "$suite" "$mirror" "$include" | sha256sum | cut -c1-12)
tarball=${cache:+$cache/root-$suite-$key.tar.zst}
mkdir -p "$root"
if [[ -n $tarball && -f $tarball ]]; then
	say "unpacking the cached root $tarball"
	tar --zstd -xpf "$tarball" -C "$root" --numeric-owner
else
	say "debootstrap $suite from $mirror (variant minbase, +$include)"
	timeout 600 debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
		>"$work/debootstrap.log" 2>&1 || fail "debootstrap (see $work/debootstrap.log)"
	if [[ -n $tarball ]]; then
		mkdir -p "$cache"
		tar --zstd -cpf "$tarball.tmp.$$" -C "$root" --numeric-owner . && mv "$tarball.tmp.$$" "$tarball"
		say "cached the root as $tarball ($(du -h "$tarball" | cut -f1))"
	fi
fi

in_root() { chroot "$root" "$@"; }

# The prewarm-imds package's maintainer scripts and unit, in a throwaway
# copy of the root: install creates the user and group and enables the
# unit; purge removes the unit's links and the store.
imds_check() {
	local r=$work/imds-root
	cp -a "$root" "$r"
	cp "$imds_deb" "$r/tmp/"
	chroot "$r" dpkg -i "/tmp/${imds_deb##*/}" >"$work/imds-dpkg.log" 2>&1 || fail "dpkg -i prewarm-imds"
	chroot "$r" getent group prewarm-admin >/dev/null || fail "prewarm-imds: no prewarm-admin group"
	chroot "$r" getent passwd prewarm-imds >/dev/null || fail "prewarm-imds: no prewarm-imds user"
	[[ -L $r/etc/systemd/system/multi-user.target.wants/prewarm-imds.service ]] || fail "prewarm-imds: not enabled"
	chroot "$r" systemd-analyze verify --man=no prewarm-imds.service || fail "systemd-analyze verify prewarm-imds.service"
	mkdir -p "$r/var/lib/prewarm-imds"
	chroot "$r" dpkg --purge prewarm-imds >>"$work/imds-dpkg.log" 2>&1 || fail "dpkg --purge prewarm-imds"
	[[ ! -e $r/etc/systemd/system/multi-user.target.wants/prewarm-imds.service && ! -e $r/var/lib/prewarm-imds ]] ||
		fail "prewarm-imds: purge left the unit link or the store"
	rm -rf "$r"
	say "prewarm-imds .deb: user+group created, unit enabled and verified, purged cleanly"
}
imds_check

# Bake the image: what packaging/README.md tells image builders to do.
say "baking the image: dpkg -i ${agent_deb##*/} in a chroot"
cp "$agent_deb" "$root/tmp/"
in_root dpkg -i "/tmp/${agent_deb##*/}" >"$work/dpkg.log" 2>&1 || fail "dpkg -i prewarm-agent (see $work/dpkg.log)"
rm -f "$root/tmp/${agent_deb##*/}"
[[ -L $root/etc/systemd/system/multi-user.target.wants/prewarm-agent.service ]] ||
	fail "the package did not enable prewarm-agent.service"
in_root systemd-analyze verify --man=no prewarm-agent.service || fail "systemd-analyze verify prewarm-agent.service"
echo golden >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/machine-id" # every clone gets its own on first boot
: >"$root/etc/resolv.conf"
printf 'auto eth0\niface eth0 inet dhcp\n' >"$root/etc/network/interfaces.d/eth0"
say "image ready: prewarm-agent.service enabled and verified"

# ---------------------------------------------------------------- host side
net=10.213.$(($$ % 250 + 1))
ip netns add "$hns"
ip netns add "$gns"
ip -n "$hns" link set lo up
ip -n "$hns" link add vh0 type veth peer name eth0 netns "$gns"
ip -n "$hns" addr add "$net.1/24" dev vh0
ip -n "$hns" addr add 169.254.169.254/32 dev vh0
ip -n "$hns" link set vh0 up
ip -n "$hns" route add unreachable "$net.0/24" metric 4000

ip netns exec "$hns" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
	--interface=vh0 --bind-interfaces --except-interface=lo \
	--dhcp-range="$net.50,$net.150,2m" --dhcp-leasefile="$work/dnsmasq.leases" \
	--pid-file="$work/dnsmasq.pid" --dhcp-authoritative --no-ping --log-dhcp \
	--log-facility=- >"$work/dnsmasq.log" 2>&1 &
dnsmasq_pid=$!

# The IMDS from the fresh .deb. It binds a listener to vh0 once the instance
# is registered with that hostInterface, and knows the guest by it.
dpkg-deb -x "$imds_deb" "$work/imds-pkg"
imds=$work/imds-pkg/usr/bin/prewarm-imds
sock=$work/imds-admin.sock
ip netns exec "$hns" "$imds" serve --listen 169.254.169.254:80 \
	--admin-socket "$sock" --data-dir "$work/imds-data" >"$work/imds.log" 2>&1 &
imds_pid=$!
adm() { "$imds" "$@" --admin-socket "$sock"; }
for ((i = 0; i < 100; i++)); do
	adm list >/dev/null 2>&1 && break
	kill -0 "$imds_pid" 2>/dev/null || fail "prewarm-imds exited (see imds.log)"
	sleep 0.05
done
adm list >/dev/null || fail "prewarm-imds admin socket did not come up"
adm register "$instance" --host-interface vh0 >/dev/null
echo '{"partial": true, "hostname": "pool-standby"}' | adm publish "$instance" - >/dev/null
say "host: dnsmasq and prewarm-imds in $hns; $instance registered on vh0, placeholder (partial) published"

# ---------------------------------------------------------------- helpers
after=0 # the highest report seq seen
# wait_report DESC JQ-SELECT SECONDS: await a report matching JQ-SELECT (a
# jq boolean over one report), reading them as they arrive; a failed
# report fails the test at once.
wait_report() {
	local desc=$1 sel=$2 limit=$3 deadline out left
	deadline=$((SECONDS + limit))
	while ((SECONDS < deadline)); do
		left=$((deadline - SECONDS))
		out=$(timeout $((left + 15)) "$imds" status "$instance" --admin-socket "$sock" \
			--wait --after "$after" --timeout "${left}s" 2>/dev/null) || continue
		jq -c '.reports[]' <<<"$out" >>"$work/reports.jsonl"
		jq -r '.reports[] | "    report seq=\(.seq) gen=\(.generation) state=\(.state)\(if .event != "" and .event != null then " event=\(.event)" else "" end)\(if .error != "" and .error != null then " error=\(.error)" else "" end)"' <<<"$out"
		after=$(jq --argjson a "$after" '[.reports[].seq, $a] | max' <<<"$out")
		if jq -e '[.reports[] | select(.state == "failed")] | length > 0' <<<"$out" >/dev/null; then
			fail "the agent reported failed while awaiting $desc"
		fi
		if jq -e "[.reports[] | select($sel)] | length > 0" <<<"$out" >/dev/null; then
			return 0
		fi
	done
	fail "no report $desc within ${limit}s"
}

# container_pid: the host PID of the container's PID 1 (systemd), a
# descendant of nspawn whose PID in its own namespace is 1.
container_pid() {
	local p c
	for ((i = 0; i < 100; i++)); do
		for p in $(pgrep -P "$nspawn_pid") $(pgrep -P "$nspawn_pid" | xargs -r -n1 pgrep -P); do
			if grep -qE '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/$p/status" 2>/dev/null; then
				c=$p
				break 2
			fi
		done
		kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited (see boot logs)"
		sleep 0.05
	done
	[[ -n ${c:-} ]] || fail "no container PID 1 under nspawn $nspawn_pid"
	cpid=$c
}
inside() { nsenter -t "$cpid" -a "$@"; }
# in_container COMM: host PIDs of the container's processes named COMM (the
# image has no procps).
in_container() {
	local ns p
	ns=$(readlink "/proc/$cpid/ns/pid")
	for p in $(pgrep -x "$1"); do
		[[ $(readlink "/proc/$p/ns/pid" 2>/dev/null) == "$ns" ]] && printf '%s ' "$p"
	done
	return 0
}

# boot LOGNAME: boot the root with systemd as PID 1. The flags are those of
# shared/HARNESS.md (PID 1 here is not systemd) without --volatile, so the
# state persists across boots, plus CAP_NET_ADMIN: nspawn keeps it only for
# networks it made itself, and the image's DHCP client and the agent need it
# in the namespace given with --network-namespace-path.
boot() {
	systemd-nspawn -D "$root" -M "$id" --boot --register=no --keep-unit --console=pipe \
		--link-journal=no --network-namespace-path="/run/netns/$gns" \
		--capability=CAP_NET_ADMIN --resolv-conf=off --timezone=off </dev/null >"$work/$1.log" 2>&1 &
	nspawn_pid=$!
	container_pid
	for ((i = 0; i < 200; i++)); do
		inside test -S /run/systemd/private 2>/dev/null && break
		kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited (see $1.log)"
		sleep 0.05
	done
	local st
	st=$(timeout 90 nsenter -t "$cpid" -a systemctl is-system-running --wait 2>/dev/null) || true
	say "container booted (systemd PID $cpid on the host): system $st"
	if [[ $st != running ]]; then
		inside systemctl --failed --no-legend --plain | sed 's/^/    failed unit: /'
	fi
}

unit_prop() { inside systemctl show -p "$1" --value prewarm-agent.service; }

poweroff() {
	inside systemctl poweroff --no-block
	timeout 60 tail --pid="$nspawn_pid" -f /dev/null || fail "the container did not power off within 60s"
	wait "$nspawn_pid" || fail "systemd-nspawn exited with an error (see logs)"
	nspawn_pid='' cpid=''
}

# ---------------------------------------------------------------- 1+2: boot, partial-ready
boot boot1
[[ $(inside systemctl is-enabled prewarm-agent.service) == enabled ]] || fail "prewarm-agent.service is not enabled"
wait_report "partial-ready for generation 1" '.state == "partial-ready" and .generation == 1' 90
[[ $(unit_prop ActiveState)/$(unit_prop SubState) == active/running ]] ||
	fail "prewarm-agent.service is $(unit_prop ActiveState)/$(unit_prop SubState)"
[[ $(unit_prop NRestarts) == 0 ]] || fail "prewarm-agent.service restarted $(unit_prop NRestarts) times"
[[ $(inside hostname) == pool-standby ]] || fail "placeholder host name not applied: $(inside hostname)"
say "OK: the unit started by itself (active/running, Type=$(unit_prop Type), 0 restarts) and reported partial-ready; host name pool-standby"

# ---------------------------------------------------------------- 3: link bounce
lease_before=$(inside ip -4 -o addr show dev eth0 | awk '{print $4}')
dhclient_before=$(in_container dhclient)
acks_before=$(grep -c 'DHCPACK(vh0)' "$work/dnsmasq.log" || true)
[[ -n $dhclient_before ]] || fail "the image's dhclient (ifupdown) is not running"
ip -n "$hns" link set vh0 down
ip -n "$hns" link set vh0 up
wait_report "dhcp-renewed after the link bounce" '.event == "dhcp-renewed"' 60
lease_after=$(inside ip -4 -o addr show dev eth0 | awk '{print $4}')
dhclient_after=$(in_container dhclient)
acks_after=$(grep -c 'DHCPACK(vh0)' "$work/dnsmasq.log" || true)
[[ -n $lease_after ]] || fail "eth0 has no address after the renewal"
((acks_after > acks_before)) || fail "dnsmasq sent no DHCPACK for the renewal"
# Renewed through the image's client: dhclient has no renew signal, so the
# agent restarts it (a new PID), and no built-in client ran beside it.
[[ -n $dhclient_after && $dhclient_after != "$dhclient_before" ]] ||
	fail "the renewal did not go through the image's dhclient (PIDs $dhclient_before-> ${dhclient_after:-none})"
say "OK: host-side link bounce -> dhcp-renewed through the image's dhclient (PID $dhclient_before-> $dhclient_after, eth0 $lease_before -> $lease_after, DHCPACK from dnsmasq)"

# ---------------------------------------------------------------- 4: final config
alice_key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHCoy0/iT5AeF0TYXTGlxg17bmLM86aghaDYZ7w1bmIK alice@prewarm-ci'
alice_pw=pw-$RANDOM$RANDOM-prewarm-ci
jq -n --arg key "$alice_key" --arg pw "$alice_pw" '{
	hostname: "web-01", timezone: "Europe/Berlin",
	users: [{name: "alice", groups: ["sudo"], sudo: "nopasswd", shell: "/bin/bash",
		sshAuthorizedKeys: [$key], password: $pw}]}' | adm publish "$instance" - >/dev/null
wait_report "provisioned for generation 2" '.state == "provisioned" and .generation == 2' 90
[[ $(inside hostname) == web-01 ]] || fail "kernel host name is $(inside hostname), want web-01"
[[ $(inside cat /etc/hostname) == web-01 ]] || fail "/etc/hostname is $(inside cat /etc/hostname)"
inside getent passwd alice | grep ':/bin/bash$' >/dev/null || fail "user alice missing or without /bin/bash"
inside id -nG alice | grep -w sudo >/dev/null || fail "alice is not in group sudo"
inside cat /home/alice/.ssh/authorized_keys | grep -F "$alice_key" >/dev/null || fail "alice's SSH key missing"
inside sudo -l -U alice | grep NOPASSWD >/dev/null || fail "alice has no NOPASSWD sudo rule"
[[ $(inside readlink /etc/localtime) == */Europe/Berlin ]] || fail "time zone not applied"
[[ $(inside getent shadow alice | cut -d: -f2) == "\$6\$"* ]] || fail "alice has no SHA-512 crypt password"
# The plaintext password is nowhere the tenant or an admin can read it.
for f in /var/log/prewarm /run/prewarm /var/lib/prewarm; do
	! inside grep -rqF -- "$alice_pw" "$f" || fail "the plaintext password is in $f"
done
! inside journalctl -b --no-pager -o cat | grep -F -- "$alice_pw" >/dev/null || fail "the plaintext password is in the journal"
! grep -F -- "$alice_pw" "$work/reports.jsonl" >/dev/null || fail "the plaintext password is in a status report"
say "OK: provisioned; inside the image: hostname web-01, user alice (bash, sudo NOPASSWD, SSH key, hashed password), zone Europe/Berlin; the password in no log, report or state file"
inside prewarm-agent status | sed 's/^/    prewarm-agent status: /'

# no_rereport SEQ WHAT: await the agent's "starting" report after SEQ, then
# everything it says in its first seconds; none of it may be another
# partial-ready or provisioned (the generations are applied already).
no_rereport() {
	local seq=$1 what=$2 out again
	wait_report "starting after $what" '.state == "starting"' 60
	for ((i = 0; i < 100; i++)); do
		[[ $(unit_prop ActiveState) == active ]] && break
		sleep 0.05
	done
	[[ $(unit_prop ActiveState) == active ]] || fail "prewarm-agent.service is $(unit_prop ActiveState) after $what"
	if out=$(timeout 20 "$imds" status "$instance" --admin-socket "$sock" --wait --after "$after" --timeout 3s 2>/dev/null); then
		jq -c '.reports[]' <<<"$out" >>"$work/reports.jsonl"
		jq -r '.reports[] | "    report seq=\(.seq) gen=\(.generation) state=\(.state)"' <<<"$out"
		after=$(jq --argjson a "$after" '[.reports[].seq, $a] | max' <<<"$out")
	fi
	again=$(jq -c --argjson s "$seq" 'select(.seq > $s and (.state == "partial-ready" or .state == "provisioned"))' "$work/reports.jsonl" | wc -l)
	((again == 0)) || fail "after $what the agent reported partial-ready/provisioned again ($again times)"
}
count() { jq -c "select(.state == \"$1\")" "$root/var/log/prewarm/status.jsonl" | wc -l; }
starts() { inside journalctl -b -u prewarm-agent.service -o cat --no-pager | grep -c '^Started prewarm-agent' || true; }

# ---------------------------------------------------------------- 5: upgrade
pr_before=$(count partial-ready) pv_before=$(count provisioned)
seq_before=$after starts_before=$(starts)
dhclient_before=$(in_container dhclient)
grep -q 'prewarm-agent.service' "/proc/${dhclient_before%% *}/cgroup" ||
	fail "dhclient is not in the agent's cgroup: $(cat "/proc/${dhclient_before%% *}/cgroup")"
cp "$agent_deb" "$root/var/cache/prewarm-agent.deb"
inside dpkg -i /var/cache/prewarm-agent.deb >"$work/upgrade.log" 2>&1 || fail "dpkg -i over the running agent (see upgrade.log)"
rm -f "$root/var/cache/prewarm-agent.deb"
no_rereport "$seq_before" "the package upgrade"
(($(starts) == starts_before + 1)) || fail "the upgrade started the agent $(($(starts) - starts_before)) times, want 1"
[[ $(in_container dhclient) == "$dhclient_before" ]] ||
	fail "the agent's restart took the DHCP client along (PIDs $dhclient_before-> $(in_container dhclient))"
say "OK: package upgrade in the running image: agent restarted once, state kept, nothing re-reported; the dhclient it started (in its cgroup) kept running"

# ---------------------------------------------------------------- 6: reboot
seq_before=$after
poweroff
say "container powered off; booting the same root again"
boot boot2
no_rereport "$seq_before" "the reboot"
[[ $(count partial-ready) == "$pr_before" && $(count provisioned) == "$pv_before" ]] ||
	fail "the status log grew partial-ready/provisioned lines after the upgrade and reboot"
[[ $(inside hostname) == web-01 ]] || fail "host name after the reboot is $(inside hostname)"
inside getent passwd alice >/dev/null || fail "alice is gone after the reboot"
say "OK: after the reboot the agent started with its state (seq $seq_before -> $after) and reported no partial-ready/provisioned again"

# ---------------------------------------------------------------- 7: purge
inside dpkg --purge prewarm-agent >"$work/purge.log" 2>&1 || fail "dpkg --purge prewarm-agent (see purge.log)"
[[ $(unit_prop ActiveState) != active ]] || fail "prewarm-agent.service still active after the purge"
for f in /var/lib/prewarm /var/log/prewarm /etc/systemd/system/multi-user.target.wants/prewarm-agent.service /usr/bin/prewarm-agent; do
	inside test ! -e "$f" || fail "$f is left after the purge"
done
say "OK: purge stopped the agent and removed its unit link, binary, state and status log"

# ---------------------------------------------------------------- 8: the IMDS unit
# The IMDS package under a running systemd: postinst starts the sandboxed
# unit as prewarm-imds with the admin socket in group prewarm-admin. Its
# guest API goes to loopback here (no 169.254.169.254 in this namespace).
mkdir -p "$root/etc/default"
echo 'PREWARM_IMDS_OPTS="--listen=127.0.0.1:8169"' >"$root/etc/default/prewarm-imds"
cp "$imds_deb" "$root/var/cache/prewarm-imds.deb"
inside dpkg -i --force-confold /var/cache/prewarm-imds.deb >"$work/imds-unit.log" 2>&1 ||
	fail "dpkg -i prewarm-imds in the running container (see imds-unit.log)"
rm -f "$root/var/cache/prewarm-imds.deb"
[[ $(inside systemctl show -p ActiveState --value prewarm-imds.service) == active ]] ||
	fail "prewarm-imds.service is not active: $(inside systemctl status --no-pager prewarm-imds.service 2>&1 | tail -n 5)"
for ((i = 0; i < 100; i++)); do
	inside test -S /run/prewarm/imds-admin.sock && break
	sleep 0.05
done
[[ $(inside stat -c '%U:%G %a' /run/prewarm/imds-admin.sock) == 'prewarm-imds:prewarm-admin 660' ]] ||
	fail "admin socket is $(inside stat -c '%U:%G %a' /run/prewarm/imds-admin.sock), want prewarm-imds:prewarm-admin 660"
inside prewarm-imds list >/dev/null || fail "prewarm-imds list over the admin socket failed"
say "OK: prewarm-imds.service runs sandboxed as prewarm-imds; admin socket prewarm-imds:prewarm-admin 0660 answers"

poweroff
say "PASS: the golden image provisioned itself ($(((${EPOCHREALTIME/./} - t0) / 1000000)) s)"
echo "1 passed, 0 failed"
