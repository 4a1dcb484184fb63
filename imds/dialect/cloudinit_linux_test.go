package dialect

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/config"
)

// cloud-init from Debian against the dialects, for real.
//
// Layout: the test re-runs itself under unshare --mount --net (the "host"
// namespace, private /run so `ip netns` state stays inside), which serves
// the dialects on 169.254.169.254:80 and creates a guest namespace joined
// to it by a veth pair (one hop, as a VM's tap). In the guest namespace
// cloud-init runs chrooted into an overlay of / whose upper layer is a
// tmpfs, in its own mount and UTS namespaces, so nothing it writes (users,
// /etc, /root/.ssh, the host name) reaches the machine. The sandbox looks
// like the cloud's VMs where cloud-init checks: for EC2 a Xen-style
// /sys/hypervisor/uuid starting with "ec2" (so cloud-init identifies AWS
// and takes the IMDSv2 token path; the host requires tokens), for GCE the
// DMI product name (and no container, which makes cloud-init ignore DMI).

const ciEnv = "PREWARM_DIALECT_CLOUDINIT"

const (
	ciGuestAddr = "169.254.10.5"
	ciUserData  = "#cloud-config\nbootcmd:\n - echo prewarm-bootcmd > /run/prewarm-ci-bootcmd\nwrite_files:\n - path: /run/prewarm-ci/marker\n   content: from-prewarm-user-data\n"
	ciKey1      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrewarmCloudInitKeyOne0000000000000000000 alice@laptop"
	ciKey2      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrewarmCloudInitKeyTwo0000000000000000000 bob@desk"
)

// ciGuestScript runs in the guest network namespace, in fresh mount and
// UTS namespaces. $1 is the results directory (holding the cloud-init
// config to add, cfg), $2 the cloud to look like: ec2 or gce.
const ciGuestScript = `set -eu
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

// ciConfig is what the test adds to cloud-init's configuration: one
// datasource, pointed at 169.254.169.254, and only the modules about
// identity (no disks, no network rendering, no packages).
func ciConfig(cloud string) string {
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

// TestCloudInit runs Debian's cloud-init with its Ec2 and its GCE
// datasource against the dialects: each must pick up the host name, the
// SSH keys of the default user and the user-data. Needs root, cloud-init,
// unshare, ip and chroot; skipped otherwise, and in -short mode.
func TestCloudInit(t *testing.T) {
	if cloud := os.Getenv(ciEnv); cloud != "" {
		ciHost(t, cloud)
		return
	}
	if testing.Short() {
		t.Skip("cloud-init runs skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for namespaces")
	}
	for _, bin := range []string{"cloud-init", "unshare", "ip", "chroot"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (apt-get install cloud-init)", bin)
		}
	}
	for _, cloud := range []string{"ec2", "gce"} {
		t.Run(cloud, func(t *testing.T) {
			out := t.TempDir()
			if err := os.WriteFile(filepath.Join(out, "cfg"), []byte(ciConfig(cloud)), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--fork", "--kill-child",
				os.Args[0], "-test.run=^TestCloudInit$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), ciEnv+"="+cloud, "PREWARM_CI_OUT="+out)
			b, err := cmd.CombinedOutput()
			t.Logf("host namespace run:\n%s", b)
			if err != nil {
				if log, rerr := os.ReadFile(filepath.Join(out, "cloud-init.log")); rerr == nil {
					t.Logf("cloud-init.log (tail):\n%s", tail(string(log), 60))
				}
				t.Fatalf("cloud-init run: %v", err)
			}
		})
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, b)
	}
}

// ciHost is the host side, inside the private mount and network
// namespaces.
func ciHost(t *testing.T, cloud string) {
	out := os.Getenv("PREWARM_CI_OUT")
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make / private: %v", err)
	}
	if err := syscall.Mount("run", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("private /run: %v", err)
	}
	guestNS := fmt.Sprintf("pwd-%d-ci", os.Getpid())
	run(t, "ip", "link", "set", "lo", "up")
	run(t, "ip", "netns", "add", guestNS)
	defer exec.Command("ip", "netns", "del", guestNS).Run()
	run(t, "ip", "link", "add", "pwci-h", "type", "veth", "peer", "name", "pwci-g", "netns", guestNS)
	run(t, "ip", "addr", "add", "169.254.169.254/16", "dev", "pwci-h")
	run(t, "ip", "link", "set", "pwci-h", "up")
	run(t, "ip", "-n", guestNS, "link", "set", "lo", "up")
	run(t, "ip", "-n", guestNS, "addr", "add", ciGuestAddr+"/16", "dev", "pwci-g")
	run(t, "ip", "-n", guestNS, "link", "set", "pwci-g", "up")

	h := newHost(t, []string{NameEC2, NameGCE}, Settings{AvailabilityZone: "eu-central-1a", EC2Tokens: TokensRequired, GCEProjectID: "ci-project"})
	// On GCE, cloud-init gives the default user (debian) the keys listed
	// for it or for "cloudinit"; on EC2 every key.
	users := []config.User{
		{Name: "alice", SSHAuthorizedKeys: []string{ciKey1}},
		{Name: "bob", SSHAuthorizedKeys: []string{ciKey2}},
	}
	if cloud == "gce" {
		users = []config.User{
			{Name: "debian", SSHAuthorizedKeys: []string{ciKey1}},
			{Name: "cloudinit", SSHAuthorizedKeys: []string{ciKey2}},
			{Name: "carol", SSHAuthorizedKeys: []string{keyCarol}},
		}
	}
	h.register("i-0prewarmci0001", ciGuestAddr, &config.Document{Hostname: "ci-guest", UserData: strp(ciUserData), Users: users})
	ln, err := net.Listen("tcp", "169.254.169.254:80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnContext: ConnContext, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", guestNS, "unshare", "--mount", "--uts", "sh", "-c", ciGuestScript, "sh", out, cloud)
	b, err := cmd.CombinedOutput()
	t.Logf("guest: %v\n%s", err, b)
	ciOut, _ := os.ReadFile(filepath.Join(out, "cloud-init.out"))
	t.Logf("cloud-init init output (tail):\n%s", tail(string(ciOut), 12))
	reqs := h.requests()
	t.Logf("%d requests to the dialects, first ones:\n%s", len(reqs), strings.Join(reqs[:min(len(reqs), 12)], "\n"))
	if err != nil {
		t.Fatalf("guest run: %v", err)
	}

	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(out, name))
		return strings.TrimSpace(string(b))
	}
	if got := read("hostname"); got != "ci-guest" {
		t.Errorf("guest host name = %q, want ci-guest", got)
	}
	wantID := "i-0prewarmci0001"
	if cloud == "gce" {
		wantID = numericID(wantID)
	}
	if got := read("instance-id"); got != wantID {
		t.Errorf("cloud-init's instance id = %q, want %q", got, wantID)
	}
	keys := read("authorized_keys")
	if !strings.Contains(keys, ciKey1) || !strings.Contains(keys, ciKey2) {
		t.Errorf("debian's authorized_keys = %q, want both keys", keys)
	}
	if strings.Contains(keys, keyCarol) {
		t.Errorf("debian got carol's key: %q", keys)
	}
	if got := read("user-data.txt"); got != strings.TrimSpace(ciUserData) {
		t.Errorf("user-data.txt = %q", got)
	}
	if got := read("marker"); got != "from-prewarm-user-data" {
		t.Errorf("write_files marker = %q", got)
	}
	if got := read("bootcmd"); got != "prewarm-bootcmd" {
		t.Errorf("bootcmd marker = %q", got)
	}
	if !strings.HasPrefix(read("passwd"), "debian:") {
		t.Errorf("default user not created in the sandbox: %q", read("passwd"))
	}
	if leak := read("leak"); leak != "" {
		t.Error(leak)
	}
	if cloud != "ec2" {
		return
	}
	var puts, withToken, without int
	for _, r := range reqs {
		switch {
		case strings.HasPrefix(r, "PUT /latest/api/token"):
			puts++
		case strings.HasSuffix(r, "token=yes"):
			withToken++
		default:
			without++
		}
	}
	if puts == 0 || withToken < 10 || without != 0 {
		t.Errorf("cloud-init's requests: %d token PUTs, %d reads with a token, %d without; want IMDSv2 throughout", puts, withToken, without)
	}
}
