package nstest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// GuestEnv marks a test binary re-executed inside a guest namespace.
const GuestEnv = "PWL_GUEST"

// InGuest reports whether this process is the guest side of a test.
func InGuest() bool { return os.Getenv(GuestEnv) != "" }

// RequireRoot skips a root test when not root. Such tests run in CI as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("ROOT TEST: needs root (network namespaces, veth, dnsmasq); skipped as non-root")
	}
}

// Require skips when a command is missing, naming the apt package.
func Require(t testing.TB, cmd, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(cmd); err != nil {
		t.Skipf("%s not installed (apt-get install %s)", cmd, pkg)
	}
}

var seq atomic.Int32

// Pair is a veth pair between two fresh namespaces.
type Pair struct {
	Host, Guest string // namespace names
	HostIf      string // "vh0", carries 10.77.0.1/24 in Host
	GuestIf     string // "eth0" in Guest
	GuestMAC    string
	Dir         string // scratch directory of the test
}

// Sh runs a command, failing the test on error.
func Sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NewPair makes the namespaces (pwl-<pid>-<n>-h/g) and deletes them when
// the test ends.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	RequireRoot(t)
	n := seq.Add(1)
	p := &Pair{
		Host:     fmt.Sprintf("pwl-%d-%d-h", os.Getpid(), n),
		Guest:    fmt.Sprintf("pwl-%d-%d-g", os.Getpid(), n),
		HostIf:   "vh0",
		GuestIf:  "eth0",
		GuestMAC: fmt.Sprintf("52:54:00:77:%02x:%02x", os.Getpid()&0xff, n&0xff),
		Dir:      t.TempDir(),
	}
	Sh(t, "ip", "netns", "add", p.Host)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.Host).Run() })
	Sh(t, "ip", "netns", "add", p.Guest)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.Guest).Run() })
	Sh(t, "ip", "-n", p.Host, "link", "add", p.HostIf, "type", "veth", "peer", "name", p.GuestIf, "netns", p.Guest)
	Sh(t, "ip", "-n", p.Guest, "link", "set", p.GuestIf, "address", p.GuestMAC)
	Sh(t, "ip", "-n", p.Host, "addr", "add", "10.77.0.1/24", "dev", p.HostIf)
	Sh(t, "ip", "-n", p.Host, "addr", "add", "169.254.169.254/32", "dev", p.HostIf)
	Sh(t, "ip", "-n", p.Host, "link", "set", "lo", "up")
	Sh(t, "ip", "-n", p.Guest, "link", "set", "lo", "up")
	Sh(t, "ip", "-n", p.Host, "link", "set", p.HostIf, "up")
	Sh(t, "ip", "-n", p.Guest, "link", "set", p.GuestIf, "up")
	return p
}

// HostLink sets the host end "up" or "down".
func (p *Pair) HostLink(t testing.TB, state string) {
	t.Helper()
	Sh(t, "ip", "-n", p.Host, "link", "set", p.HostIf, state)
}

// Dnsmasq is a DHCP server on the host end.
type Dnsmasq struct {
	cmd   *exec.Cmd
	Hosts string // the dhcp-hostsfile
}

// StartDnsmasq serves 10.77.0.100-199 with a reservation of the guest's MAC
// to reserved, touching no system config.
func (p *Pair) StartDnsmasq(t testing.TB, reserved string) *Dnsmasq {
	t.Helper()
	Require(t, "dnsmasq", "dnsmasq-base")
	d := &Dnsmasq{Hosts: filepath.Join(p.Dir, "dnsmasq.hosts")}
	d.Reserve(t, p.GuestMAC, reserved)
	log, err := os.Create(filepath.Join(p.Dir, "dnsmasq.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("ip", "netns", "exec", p.Host, "dnsmasq", "--keep-in-foreground",
		"--conf-file=/dev/null", "--port=0", "--user=root", "--interface="+p.HostIf, "--bind-interfaces",
		"--except-interface=lo", "--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,2m",
		"--dhcp-hostsfile="+d.Hosts, "--dhcp-leasefile="+filepath.Join(p.Dir, "dnsmasq.leases"),
		"--pid-file="+filepath.Join(p.Dir, "dnsmasq.pid"), "--dhcp-authoritative", "--no-ping",
		"--dhcp-option=3,10.77.0.1", "--dhcp-option=6,10.77.0.1",
		"--dhcp-option=121,169.254.169.254/32,10.77.0.1,0.0.0.0/0,10.77.0.1",
		"--log-dhcp", "--log-facility=-")
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("dnsmasq log:\n%s", b)
		}
	})
	return d
}

// Reserve (re)writes the reservation and tells a running dnsmasq (SIGHUP).
func (d *Dnsmasq) Reserve(t testing.TB, mac, addr string) {
	t.Helper()
	if err := os.WriteFile(d.Hosts, []byte(mac+","+addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(20 * time.Millisecond) // dnsmasq rereads the file asynchronously
	}
}

// Guest is a test function of this binary running inside the guest
// namespace, talking line by line over stdin/stdout.
type Guest struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	t     testing.TB
}

// StartGuest runs test function name of this binary in the guest namespace
// with env (KEY=VALUE) added.
func (p *Pair) StartGuest(t testing.TB, name string, env ...string) *Guest {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", p.Guest, exe, "-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout=120s")
	cmd.Env = append(os.Environ(), append([]string{GuestEnv + "=1", "PWL_DIR=" + p.Dir, "PWL_IF=" + p.GuestIf}, env...)...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &Guest{cmd: cmd, in: in, lines: make(chan string, 1024), t: t}
	go func() {
		defer close(g.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			t.Logf("guest: %s", line)
			g.lines <- line
		}
	}()
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return g
}

// Expect waits (bounded) for a protocol line "PWL: <prefix>..." and
// returns it without "PWL: ".
func (g *Guest) Expect(prefix string, timeout time.Duration) string {
	g.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-g.lines:
			if !ok {
				g.t.Fatalf("guest exited before %q", prefix)
			}
			if rest, ok := strings.CutPrefix(l, "PWL: "); ok && strings.HasPrefix(rest, prefix) {
				return rest
			}
			if strings.HasPrefix(l, "--- FAIL") || strings.HasPrefix(l, "FAIL") {
				g.t.Fatalf("guest failed before %q: %s", prefix, l)
			}
		case <-deadline:
			g.t.Fatalf("no %q from the guest within %s", prefix, timeout)
		}
	}
}

// Send writes one command line to the guest.
func (g *Guest) Send(line string) {
	fmt.Fprintln(g.in, line)
}

// Wait closes the guest's stdin and waits for it to pass.
func (g *Guest) Wait() {
	g.t.Helper()
	g.in.Close()
	for l := range g.lines {
		_ = l
	}
	if err := g.cmd.Wait(); err != nil {
		g.t.Fatalf("guest: %v", err)
	}
}

// Collect gathers the protocol lines starting with prefix until none has
// arrived for quiet (or max has passed).
func (g *Guest) Collect(prefix string, quiet, max time.Duration) []string {
	var out []string
	end := time.After(max)
	for {
		select {
		case l, ok := <-g.lines:
			if !ok {
				return out
			}
			if rest, ok := strings.CutPrefix(l, "PWL: "); ok && strings.HasPrefix(rest, prefix) {
				out = append(out, rest)
			}
		case <-time.After(quiet):
			return out
		case <-end:
			return out
		}
	}
}
