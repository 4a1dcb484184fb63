package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/dialect/citest"
)

// ciHostScript is the host side of TestE2ECloudInit, run under
// unshare --mount --net: a private /run (so `ip netns` state stays
// inside), a guest namespace on a veth pair (one hop, as a VM's tap),
// prewarm-imds serving 169.254.169.254:80 with tokens required, the
// instance registered by its guest address and its document published
// through the CLI, then cloud-init in the guest (citest.GuestScript).
// Arguments: binary, work dir (doc.json, guest.sh), results dir, cloud.
const ciHostScript = `set -eu
bin=$1 dir=$2 out=$3 cloud=$4
mount --make-rprivate /
mount -t tmpfs -o mode=0755 run /run
ns=pwd-$$-ci
ip link set lo up
ip netns add $ns
imds=
cleanup() {
	[ -z "$imds" ] || { kill $imds 2>/dev/null || true; wait $imds 2>/dev/null || true; }
	ip netns del $ns 2>/dev/null || true
}
trap cleanup EXIT
ip link add pwci-h type veth peer name pwci-g netns $ns
ip addr add 169.254.169.254/16 dev pwci-h
ip link set pwci-h up
ip -n $ns link set lo up
ip -n $ns addr add 169.254.10.5/16 dev pwci-g
ip -n $ns link set pwci-g up
sock=$dir/admin.sock
$bin serve --listen 169.254.169.254:80 --admin-socket $sock --data-dir $dir/data \
	--ec2-tokens required --availability-zone eu-central-1a --gce-project-id ci-project \
	--log-level debug > $out/imds.log 2>&1 &
imds=$!
i=0
until $bin list --admin-socket $sock > /dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 200 ] || { echo "prewarm-imds did not start"; exit 1; }
	sleep 0.05
done
$bin register i-0prewarmci0001 --address 169.254.10.5 --admin-socket $sock
$bin publish i-0prewarmci0001 $dir/doc.json --admin-socket $sock
ip netns exec $ns unshare --mount --uts sh $dir/guest.sh $out $cloud
`

// TestE2ECloudInit provisions a sandboxed "VM" with Debian's cloud-init
// (its Ec2 datasource, then its GCE datasource) from the real prewarm-imds
// binary: the host name, the default user's SSH keys and the user-data
// must arrive. The EC2 run has --ec2-tokens required, so cloud-init gets
// there only through IMDSv2, its token answered with TTL 1 over the veth.
// Needs root, cloud-init, unshare, ip and chroot; skipped otherwise, and
// in -short mode.
func TestE2ECloudInit(t *testing.T) {
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
	const (
		key1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUm alice@laptop"
		key2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywt bob@desk"
	)
	for _, cloud := range []string{"ec2", "gce"} {
		t.Run(cloud, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			// On GCE, cloud-init gives the default user (debian) the keys
			// listed for it or for "cloudinit"; on EC2 every key.
			users := []map[string]any{
				{"name": "alice", "sshAuthorizedKeys": []string{key1}},
				{"name": "bob", "sshAuthorizedKeys": []string{key2}},
			}
			if cloud == "gce" {
				users = []map[string]any{
					{"name": "debian", "sshAuthorizedKeys": []string{key1}},
					{"name": "cloudinit", "sshAuthorizedKeys": []string{key2}},
				}
			}
			doc, _ := json.Marshal(map[string]any{"hostname": "ci-guest", "userData": citest.UserData, "users": users})
			for name, data := range map[string]string{
				"doc.json": string(doc),
				"guest.sh": citest.GuestScript,
				"out/cfg":  citest.Config(cloud),
			} {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--fork", "--kill-child",
				"sh", "-c", ciHostScript, "sh", binPath, dir, out, cloud)
			b, err := cmd.CombinedOutput()
			read := func(name string) string {
				b, _ := os.ReadFile(filepath.Join(out, name))
				return strings.TrimSpace(string(b))
			}
			t.Logf("host and guest:\n%s", b)
			if err != nil {
				t.Logf("prewarm-imds log:\n%s", read("imds.log"))
				t.Logf("cloud-init.log (tail):\n%s", lastLines(read("cloud-init.log"), 40))
				t.Fatalf("cloud-init run: %v", err)
			}
			if got := read("hostname"); got != "ci-guest" {
				t.Errorf("guest host name = %q, want ci-guest", got)
			}
			if keys := read("authorized_keys"); !strings.Contains(keys, key1) || !strings.Contains(keys, key2) {
				t.Errorf("debian's authorized_keys = %q, want both keys", keys)
			}
			if got := read("user-data.txt"); got != strings.TrimSpace(citest.UserData) {
				t.Errorf("user-data.txt = %q", got)
			}
			if got := read("marker"); got != "from-prewarm-user-data" {
				t.Errorf("write_files marker = %q", got)
			}
			if got := read("bootcmd"); got != "prewarm-bootcmd" {
				t.Errorf("bootcmd marker = %q", got)
			}
			if cloud == "ec2" {
				if got := read("instance-id"); got != "i-0prewarmci0001" {
					t.Errorf("cloud-init's instance id = %q", got)
				}
			}
			if !strings.HasPrefix(read("passwd"), "debian:") {
				t.Errorf("default user not created in the sandbox: %q", read("passwd"))
			}
			if leak := read("leak"); leak != "" {
				t.Error(leak)
			}
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
