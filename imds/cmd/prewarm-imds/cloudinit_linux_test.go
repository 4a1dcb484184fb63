package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/imds/dialect/citest"
)

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
	netlab.RequireRoot(t, "cloud-init", "unshare", "chroot")
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
			err := ciRun(t, dir, out, cloud)
			read := func(name string) string {
				b, _ := os.ReadFile(filepath.Join(out, name))
				return strings.TrimSpace(string(b))
			}
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

// ciRun is the host side of TestE2ECloudInit: a guest namespace on a veth
// pair (one hop, as a VM's tap), prewarm-imds serving 169.254.169.254:80
// with tokens required in the host namespace, the instance registered by
// its guest address and its document (dir/doc.json) published through the
// CLI, then cloud-init in the guest (citest.GuestScript) leaving its
// results in out.
func ciRun(t *testing.T, dir, out, cloud string) error {
	name := netlab.Unique("pwci")
	host, guest := netlab.NewNetns(t, name+"-h"), netlab.NewNetns(t, name+"-g")
	netlab.Veth(t, host, "pwci-h", guest, "pwci-g", "")
	host.IP(t, "addr", "add", "169.254.169.254/16", "dev", "pwci-h")
	host.IP(t, "link", "set", "pwci-h", "up")
	guest.IP(t, "addr", "add", "169.254.10.5/16", "dev", "pwci-g")
	guest.IP(t, "link", "set", "pwci-g", "up")
	sock := filepath.Join(dir, "admin.sock")
	imds, err := netlab.StartProc(t, out, "imds", false, "nsenter", "--net="+host.Path(), "--",
		binPath, "serve", "--listen", "169.254.169.254:80", "--admin-socket", sock, "--data-dir", filepath.Join(dir, "data"),
		"--ec2-tokens", "required", "--availability-zone", "eu-central-1a", "--gce-project-id", "ci-project",
		"--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewUnix(sock)
	for i := 0; c.Healthz(ctx(t)) != nil; i++ {
		if done, perr := imds.Exited(); done || i > 200 {
			t.Fatalf("prewarm-imds did not start (exited %v: %v)", done, perr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	netlab.MustRun(t, binPath, "register", "i-0prewarmci0001", "--address", "169.254.10.5", "--admin-socket", sock)
	netlab.MustRun(t, binPath, "publish", "i-0prewarmci0001", filepath.Join(dir, "doc.json"), "--admin-socket", sock)
	cctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	b, err := guest.Command(cctx, "unshare", "--mount", "--uts", "sh", "-c", citest.GuestScript, "sh", out, cloud).CombinedOutput()
	t.Logf("guest:\n%s", b)
	return err
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
