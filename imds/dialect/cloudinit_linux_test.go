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

	"github.com/prewarm/prewarm/imds/dialect/citest"
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
	ciKey1      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrewarmCloudInitKeyOne0000000000000000000 alice@laptop"
	ciKey2      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrewarmCloudInitKeyTwo0000000000000000000 bob@desk"
)

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
			if err := os.WriteFile(filepath.Join(out, "cfg"), []byte(citest.Config(cloud)), 0o644); err != nil {
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
	h.register("i-0prewarmci0001", ciGuestAddr, &config.Document{Hostname: "ci-guest", UserData: strp(citest.UserData), Users: users})
	ln, err := net.Listen("tcp", "169.254.169.254:80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnContext: ConnContext, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", guestNS, "unshare", "--mount", "--uts", "sh", "-c", citest.GuestScript, "sh", out, cloud)
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
	if got := read("user-data.txt"); got != strings.TrimSpace(citest.UserData) {
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
