package dialect

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/imds/dialect/citest"
	"github.com/prewarm/prewarm/shared/config"
)

// cloud-init from Debian against the dialects, for real.
//
// Layout: a "host" namespace, where this process serves the dialects on
// 169.254.169.254:80 (a listener made inside it, netlab), and a guest
// namespace joined to it by a veth pair (one hop, as a VM's tap). In the
// guest namespace
// cloud-init runs chrooted into an overlay of / whose upper layer is a
// tmpfs, in its own mount and UTS namespaces, so nothing it writes (users,
// /etc, /root/.ssh, the host name) reaches the machine. The sandbox looks
// like the cloud's VMs where cloud-init checks: for EC2 a Xen-style
// /sys/hypervisor/uuid starting with "ec2" (so cloud-init identifies AWS
// and takes the IMDSv2 token path; the host requires tokens), for GCE the
// DMI product name (and no container, which makes cloud-init ignore DMI).

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
	if testing.Short() {
		t.Skip("cloud-init runs skipped in -short mode")
	}
	netlab.RequireRoot(t, "cloud-init", "unshare", "chroot")
	for _, cloud := range []string{"ec2", "gce"} {
		t.Run(cloud, func(t *testing.T) {
			out := t.TempDir()
			if err := os.WriteFile(filepath.Join(out, "cfg"), []byte(citest.Config(cloud)), 0o644); err != nil {
				t.Fatal(err)
			}
			ciHost(t, cloud, out)
			if t.Failed() {
				if log, rerr := os.ReadFile(filepath.Join(out, "cloud-init.log")); rerr == nil {
					t.Logf("cloud-init.log (tail):\n%s", tail(string(log), 60))
				}
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

// ciHost is the host side: the namespaces, the dialects served in the
// host one, cloud-init run in the guest one with its results in out.
func ciHost(t *testing.T, cloud, out string) {
	name := netlab.Unique("pwd")
	host, guest := netlab.NewNetns(t, name+"-h"), netlab.NewNetns(t, name+"-g")
	netlab.Veth(t, host, "pwci-h", guest, "pwci-g", "")
	host.IP(t, "addr", "add", "169.254.169.254/16", "dev", "pwci-h")
	host.IP(t, "link", "set", "pwci-h", "up")
	guest.IP(t, "addr", "add", ciGuestAddr+"/16", "dev", "pwci-g")
	guest.IP(t, "link", "set", "pwci-g", "up")

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
	ln := host.Listen(t, "tcp", "169.254.169.254:80")
	srv := &http.Server{Handler: h, ConnContext: ConnContext, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := guest.Command(ctx, "unshare", "--mount", "--uts", "sh", "-c", citest.GuestScript, "sh", out, cloud)
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
