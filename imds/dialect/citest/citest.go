// Package citest runs Debian's cloud-init against a metadata service in a
// sandbox, for the dialect tests of imds/dialect and prewarm-imds: nothing
// cloud-init writes (users, /etc, /root/.ssh, the host name) reaches the
// machine it runs on.
//
// GuestScript is run by the caller inside the guest's network namespace,
// in fresh mount and UTS namespaces:
//
//	ip netns exec GUEST unshare --mount --uts sh -c citest.GuestScript sh OUT CLOUD
//
// after writing Config(CLOUD) to OUT/cfg. cloud-init is chrooted into an
// overlay of / whose upper layer is a tmpfs; the sandbox looks like the
// cloud's VMs where cloud-init checks: for EC2 a Xen-style
// /sys/hypervisor/uuid starting with "ec2" (so cloud-init identifies AWS
// and takes the IMDSv2 token path), for GCE the DMI product name (and no
// container, which makes cloud-init ignore DMI). The script leaves in OUT:
// hostname, authorized_keys (of the default user, debian), user-data.txt,
// instance-id, passwd (debian's entry in the sandbox), cloud-init.log and
// cloud-init.out, and the markers the test user-data writes (marker,
// bootcmd); leak exists if debian reached the real /etc/passwd.
package citest

// UserData is user-data for the runs: a bootcmd and a write_files entry
// leave the markers "bootcmd" and "marker" in OUT.
const UserData = "#cloud-config\nbootcmd:\n - echo prewarm-bootcmd > /run/prewarm-ci-bootcmd\nwrite_files:\n - path: /run/prewarm-ci/marker\n   content: from-prewarm-user-data\n"

// GuestScript is the guest side. $1 is the results directory (holding the
// cloud-init config to add, cfg), $2 the cloud to look like: ec2 or gce.
const GuestScript = `set -eu
out=$1
cloud=$2
sb=$out/sandbox
mkdir -p $sb
mount --make-rprivate /
mount -t tmpfs -o mode=0755 sandbox $sb
mkdir -p $sb/upper $sb/work $sb/root
mount -t overlay overlay -o lowerdir=/,upperdir=$sb/upper,workdir=$sb/work $sb/root
r=$sb/root
for d in proc dev; do mount --rbind /$d $r/$d; done
mount -t tmpfs -o mode=0755 sys $r/sys
for d in /sys/*; do n=${d#/sys/}; mkdir -p $r/sys/$n; mount --rbind $d $r/sys/$n; done
case $cloud in
ec2)
	mkdir -p $r/sys/hypervisor
	echo ec2e1916-9099-7caf-fd21-0123456789ab > $r/sys/hypervisor/uuid
	;;
gce)
	umount -l $r/sys/class
	mount -t tmpfs -o mode=0755 class $r/sys/class
	for d in /sys/class/*; do n=${d#/sys/class/}; mkdir -p $r/sys/class/$n; mount --rbind $d $r/sys/class/$n; done
	mkdir -p $r/sys/class/dmi/id
	echo "Google Compute Engine" > $r/sys/class/dmi/id/product_name
	echo "GoogleCloud-0123456789ABCDEF" > $r/sys/class/dmi/id/product_serial
	printf '#!/bin/sh\necho none\nexit 1\n' > $r/usr/bin/systemd-detect-virt
	chmod 755 $r/usr/bin/systemd-detect-virt
	;;
esac
for d in run tmp var/tmp; do mount -t tmpfs -o mode=1777 $(echo $d | tr / -) $r/$d; done
rm -f $r/etc/cloud/cloud-init.disabled
cp $out/cfg $r/etc/cloud/cloud.cfg.d/99-prewarm-test.cfg
hostname before-cloud-init
rc=0
chroot $r /usr/bin/cloud-init init > $out/cloud-init.out 2>&1 || rc=$?
hostname > $out/hostname
cp $r/var/log/cloud-init.log $out/ 2>/dev/null || true
cp $r/home/debian/.ssh/authorized_keys $out/authorized_keys 2>/dev/null || true
cp $r/var/lib/cloud/instances/*/user-data.txt $out/ 2>/dev/null || true
ls $r/var/lib/cloud/instances/ > $out/instance-id 2>/dev/null || true
cp $r/run/prewarm-ci/marker $out/marker 2>/dev/null || true
cp $r/run/prewarm-ci-bootcmd $out/bootcmd 2>/dev/null || true
getent passwd debian > /dev/null && echo "debian leaked into the real /etc/passwd" > $out/leak || true
chroot $r getent passwd debian > $out/passwd 2>/dev/null || true
exit $rc
`

// Config is what the test adds to cloud-init's configuration: one
// datasource, pointed at 169.254.169.254, and only the modules about
// identity (no disks, no network rendering, no packages).
func Config(cloud string) string {
	ds := "datasource_list: [Ec2]\ndatasource:\n  Ec2:\n    metadata_urls: [\"http://169.254.169.254\"]\n    max_wait: 20\n    timeout: 5\n"
	if cloud == "gce" {
		ds = "datasource_list: [GCE]\ndatasource:\n  GCE:\n    metadata_url: \"http://169.254.169.254/computeMetadata/v1/\"\n    retries: 2\n"
	}
	return ds + `network: {config: disabled}
cloud_init_modules: [bootcmd, write-files, set_hostname, update_hostname, users-groups, ssh]
growpart: {mode: "off"}
resize_rootfs: false
ssh_genkeytypes: []
`
}
