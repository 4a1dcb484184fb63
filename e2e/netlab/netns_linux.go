package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// aptPackage names the Debian package of each tool a test may require.
var aptPackage = map[string]string{
	"ip":                 "iproute2",
	"dnsmasq":            "dnsmasq-base",
	"dhclient":           "isc-dhcp-client",
	"dhcpcd":             "dhcpcd-base",
	"busybox":            "busybox-static",
	"nsenter":            "util-linux",
	"unshare":            "util-linux",
	"chroot":             "coreutils",
	"curl":               "curl",
	"cloud-init":         "cloud-init",
	"qemu-system-x86_64": "qemu-system-x86",
	"systemd-nspawn":     "systemd-container",
	"debootstrap":        "debootstrap",
	"zstd":               "zstd",
	"make":               "make",
}

// RequireRoot skips a root test when not root, or when one of tools (or
// ip) is not installed. Such tests run in CI as root.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("ROOT TEST: needs root (network namespaces, veth, dnsmasq); skipped as non-root")
	}
	Require(t, append([]string{"ip"}, tools...)...)
	probeOnce.Do(func() {
		name := fmt.Sprintf("netlab-probe-%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
			return
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
	})
	if probeErr != nil {
		t.Skipf("network namespaces cannot be made here: %v", probeErr)
	}
}

// probeOnce checks once per process that a named network namespace can be
// made (not so in some containers, even as root).
var (
	probeOnce sync.Once
	probeErr  error
)

// Require skips the test when a tool is missing, naming its apt package.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := aptPackage[tool]
			if pkg == "" {
				pkg = "the package that has it"
			}
			t.Skipf("%s not installed (apt-get install %s): %v", tool, pkg, err)
		}
	}
}

var seq atomic.Int64

// Unique returns prefix-<pid>-<n>, a name no other test of this machine
// uses at the same time (keep prefix short: device names end at 15 bytes).
func Unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
}

// Netns is a named network namespace the harness created.
type Netns struct{ Name string }

// NewNetns makes network namespace name with lo up, and deletes it when
// the test ends. It fails the test if the namespace cannot be made.
func NewNetns(t testing.TB, name string) *Netns {
	t.Helper()
	MustRun(t, "ip", "netns", "add", name)
	n := &Netns{Name: name}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := Run(ctx, "ip", "netns", "del", name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// Path is the namespace's bind mount.
func (n *Netns) Path() string { return "/run/netns/" + n.Name }

// IP runs `ip -n NS args...`, failing the test on error.
func (n *Netns) IP(t testing.TB, args ...string) string {
	t.Helper()
	return MustRun(t, append([]string{"ip", "-n", n.Name}, args...)...)
}

// Argv is argv run inside the namespace with `ip netns exec`, which also
// gives it a private mount namespace (with this namespace's /sys).
func (n *Netns) Argv(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.Name}, argv...)
}

// Command is exec.CommandContext of argv inside the namespace (Argv).
func (n *Netns) Command(ctx context.Context, argv ...string) *exec.Cmd {
	a := n.Argv(argv...)
	cmd := exec.CommandContext(ctx, a[0], a[1:]...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs argv in the namespace within ctx and returns its combined
// output; the error includes the output.
func (n *Netns) Run(ctx context.Context, argv ...string) (string, error) {
	return Run(ctx, n.Argv(argv...)...)
}

// Do runs f on an OS thread of this process that has entered the
// namespace, so sockets f makes live there (a socket keeps its namespace
// for good). The thread is never handed back to other goroutines: its
// goroutine ends locked, and the runtime drops it.
func (n *Netns) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(n.Path())
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Dial connects to addr from inside the namespace.
func (n *Netns) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a listener inside the namespace; it is closed when the test
// ends.
func (n *Netns) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Veth joins namespace a (device aIf) to b (device bIf) by a veth pair.
// bMAC, if not "", is the b end's MAC address. Both ends stay down and
// unaddressed (the caller's IP calls); the pair goes with its namespaces.
func Veth(t testing.TB, a *Netns, aIf string, b *Netns, bIf, bMAC string) {
	t.Helper()
	a.IP(t, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	if bMAC != "" {
		b.IP(t, "link", "set", bIf, "address", bMAC)
	}
}

// LinkUp sets dev in the namespace up (up true) or down.
func (n *Netns) LinkUp(ctx context.Context, dev string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := Run(ctx, "ip", "-n", n.Name, "link", "set", dev, state)
	return err
}

// ParseAddrs picks the "inet" prefixes out of `ip -4 -o addr` output.
func ParseAddrs(out string) []string {
	var as []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				as = append(as, f[i+1])
			}
		}
	}
	return as
}
