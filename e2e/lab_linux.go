package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/client"
)

// IMDSAddr is where every guest finds the IMDS.
const IMDSAddr = "169.254.169.254"

var labSeq atomic.Int64

// RequireRoot skips the test unless it runs as root with the tools the
// harness drives installed.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root (network, UTS, mount and PID namespaces); run `sudo go test ./e2e/` or `make e2e`")
	}
	for _, tool := range []string{"ip", "nsenter", "unshare", "dnsmasq", "dhclient"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("e2e: %s not installed (make deps installs it): %v", tool, err)
		}
	}
	if _, err := os.Stat("/run/netns"); err != nil {
		os.MkdirAll("/run/netns", 0o755)
	}
}

// Netns is a named network namespace the harness created.
type Netns struct{ Name string }

// Path is the namespace's bind mount.
func (n *Netns) Path() string { return "/run/netns/" + n.Name }

func newNetns(t testing.TB, name string) *Netns {
	t.Helper()
	mustRun(t, "ip", "netns", "add", name)
	n := &Netns{Name: name}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := run(ctx, "ip", "netns", "del", name); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return n
}

// IP runs `ip -n NS args...`.
func (n *Netns) IP(t testing.TB, args ...string) string {
	t.Helper()
	return mustRun(t, append([]string{"ip", "-n", n.Name}, args...)...)
}

// Lab is one host: a network namespace with the guests' gateways and
// 169.254.169.254, running dnsmasq and prewarm-imds.
type Lab struct {
	T      testing.TB
	Name   string // prefix of every namespace: pwe-<pid>-<seq>
	Root   string // everything of the lab on disk
	HostNS *Netns
	Guests []*Guest

	HostDir   string // Root/host: the IMDS's data, admin socket, publish dir
	AdminSock string
	DataDir   string
	PubDir    string

	Dnsmasq *Proc
	IMDS    *Proc
	Admin   *client.Client

	hostsMu sync.Mutex
	// Echo, if set, receives every line of the lab's processes (the demo).
	Echo func(proc, line string)
}

// NewLab makes the host namespace and n guests (veth pairs, addresses),
// starts dnsmasq and gives every guest its namespaces. It does not start
// the IMDS, the DHCP clients or the agents.
func NewLab(t testing.TB, n int) *Lab {
	t.Helper()
	l := NewHostLab(t)
	for i := 1; i <= n; i++ {
		l.AddVeth(i)
	}
	l.StartDnsmasq()
	for _, g := range l.Guests {
		g.boot()
	}
	return l
}

// NewHostLab makes only the host namespace; add guests with AddVeth or
// AddTap, then StartDnsmasq.
func NewHostLab(t testing.TB) *Lab {
	t.Helper()
	RequireRoot(t)
	prefix := os.Getenv("PREWARM_E2E_PREFIX") // the demo's, so its trap can find leftovers
	if prefix == "" {
		prefix = fmt.Sprintf("pwe-%d", os.Getpid())
	}
	name := fmt.Sprintf("%s-%d", prefix, labSeq.Add(1))
	root := t.TempDir()
	l := &Lab{T: t, Name: name, Root: root, HostDir: filepath.Join(root, "host")}
	l.AdminSock = filepath.Join(l.HostDir, "admin.sock")
	l.DataDir = filepath.Join(l.HostDir, "data")
	l.PubDir = filepath.Join(l.HostDir, "publish")
	for _, d := range []string{l.HostDir, l.DataDir, l.PubDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l.HostNS = newNetns(t, name+"-h")
	return l
}

// Guest is one guest: a network namespace joined to the lab's host
// namespace by a veth pair (HostIf on the host, eth0 in the guest), plus a
// holder process that owns the guest's UTS, mount and PID namespaces.
type Guest struct {
	Lab    *Lab
	Index  int
	ID     string // instance id: vm-<index>
	NS     *Netns
	HostIf string // vh<index>
	MAC    string
	Dir    string // backing store of the guest's private directories

	// Net1 is the pool network, Net2 the one a claim moves the guest to.
	Net1, Net2   netip.Prefix
	Addr1, Addr2 netip.Addr
	GW1, GW2     netip.Addr

	// A second, static NIC (eth1 in the guest, StaticIf on the host, which
	// holds StaticGW): no DHCP, for the config's static address and route.
	StaticIf, StaticMAC string
	StaticNet           netip.Prefix
	StaticGW            netip.Addr

	reserved netip.Addr // the address the DHCP reservation names now
	holder   *Proc
	pid1     int
	Agent    *Proc
}

func (l *Lab) newGuest(i int) *Guest {
	g := &Guest{
		Lab: l, Index: i, ID: fmt.Sprintf("vm-%d", i),
		HostIf: fmt.Sprintf("vh%d", i),
		MAC:    fmt.Sprintf("52:54:00:77:00:%02x", i),
		Dir:    filepath.Join(l.Root, fmt.Sprintf("g%d", i)),
		Net1:   netip.MustParsePrefix(fmt.Sprintf("10.77.%d.0/24", i)),
		Net2:   netip.MustParsePrefix(fmt.Sprintf("10.78.%d.0/24", i)),
		Addr1:  netip.MustParseAddr(fmt.Sprintf("10.77.%d.10", i)),
		Addr2:  netip.MustParseAddr(fmt.Sprintf("10.78.%d.20", i)),
		GW1:    netip.MustParseAddr(fmt.Sprintf("10.77.%d.1", i)),
		GW2:    netip.MustParseAddr(fmt.Sprintf("10.78.%d.1", i)),
	}
	g.reserved = g.Addr1
	return g
}

// AddVeth adds guest i: its network namespace joined to the host by a veth
// pair (vh<i> on the host, eth0 in the guest). Call before StartDnsmasq.
func (l *Lab) AddVeth(i int) *Guest {
	t := l.T
	g := l.newGuest(i)
	g.NS = newNetns(t, fmt.Sprintf("%s-g%d", l.Name, i))
	l.HostNS.IP(t, "link", "add", g.HostIf, "type", "veth", "peer", "name", "eth0", "netns", g.NS.Name)
	g.NS.IP(t, "link", "set", "eth0", "address", g.MAC)
	l.hostSide(g)
	g.StaticIf = fmt.Sprintf("vs%d", i)
	g.StaticMAC = fmt.Sprintf("52:54:00:78:00:%02x", i)
	g.StaticNet = netip.MustParsePrefix(fmt.Sprintf("192.168.%d.0/24", 100+i))
	g.StaticGW = netip.MustParseAddr(fmt.Sprintf("192.168.%d.254", 100+i))
	l.HostNS.IP(t, "link", "add", g.StaticIf, "type", "veth", "peer", "name", "eth1", "netns", g.NS.Name)
	g.NS.IP(t, "link", "set", "eth1", "address", g.StaticMAC)
	l.HostNS.IP(t, "addr", "add", g.StaticGW.String()+"/24", "dev", g.StaticIf)
	l.HostNS.IP(t, "link", "set", g.StaticIf, "up")
	l.Guests = append(l.Guests, g)
	return g
}

// hostSide gives the host end of g's link its gateway address and
// 169.254.169.254/32, sets it up, and adds the unreachable routes.
func (l *Lab) hostSide(g *Guest) {
	t, h := l.T, l.HostNS
	h.IP(t, "addr", "add", g.GW1.String()+"/24", "dev", g.HostIf)
	h.IP(t, "addr", "add", IMDSAddr+"/32", "dev", g.HostIf)
	h.IP(t, "link", "set", g.HostIf, "up")
	// While the link is down nothing for the guest may fall through to
	// another route (HARNESS.md).
	h.IP(t, "route", "add", "unreachable", g.Net1.String(), "metric", "4000")
	h.IP(t, "route", "add", "unreachable", g.Net2.String(), "metric", "4000")
}

// writeHosts writes dnsmasq's reservations (MAC → address) for every guest.
func (l *Lab) writeHosts() {
	var b strings.Builder
	for _, g := range l.Guests {
		fmt.Fprintf(&b, "%s,%s,%s\n", g.MAC, g.reserved, g.ID)
	}
	tmp := filepath.Join(l.HostDir, ".dnsmasq.hosts")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		l.T.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(l.HostDir, "dnsmasq.hosts")); err != nil {
		l.T.Fatal(err)
	}
}

// StartDnsmasq writes the reservations of every guest and starts dnsmasq
// on their host interfaces.
func (l *Lab) StartDnsmasq() {
	t := l.T
	l.writeHosts()
	args := []string{"nsenter", "--net=" + l.HostNS.Path(), "--",
		"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--bind-interfaces", "--except-interface=lo",
		"--dhcp-hostsfile=" + filepath.Join(l.HostDir, "dnsmasq.hosts"),
		"--dhcp-leasefile=" + filepath.Join(l.HostDir, "dnsmasq.leases"),
		"--pid-file=" + filepath.Join(l.HostDir, "dnsmasq.pid"),
		"--dhcp-authoritative", "--no-ping", "--user=root", "--log-dhcp", "--log-facility=-",
	}
	for _, g := range l.Guests {
		args = append(args, "--interface="+g.HostIf,
			"--dhcp-range="+g.Net1.Addr().String()+",static,255.255.255.0,1h",
			"--dhcp-range="+g.Net2.Addr().String()+",static,255.255.255.0,1h")
	}
	p, err := startProc(t, l.HostDir, "dnsmasq", false, args...)
	if err != nil {
		t.Fatal(err)
	}
	l.echo(p)
	l.Dnsmasq = p
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := p.Log.WaitFunc(ctx, 0, l.hostsRead); err != nil {
		t.Fatalf("dnsmasq did not start: %v", err)
	}
}

// hostsRead matches dnsmasq's line saying it read the reservations.
func (l *Lab) hostsRead(line string) bool {
	return strings.HasSuffix(line, "]: read "+filepath.Join(l.HostDir, "dnsmasq.hosts"))
}

func (l *Lab) echo(p *Proc) {
	if l.Echo != nil {
		name := p.Name
		p.Log.mu.Lock()
		p.Log.echo = func(s string) { l.Echo(name, s) }
		p.Log.mu.Unlock()
	}
}

// StartIMDS starts prewarm-imds in the host namespace, serving the guest
// API on 169.254.169.254:80, and waits until its admin API answers.
func (l *Lab) StartIMDS(extra ...string) {
	t := l.T
	t.Helper()
	// No static --guest-interface: the IMDS binds a listener to each
	// registered hostInterface when it is registered (--bind-interfaces,
	// the default), after its device-less listener (TestIMDSListenerOrder
	// says why the order matters).
	args := []string{"nsenter", "--net=" + l.HostNS.Path(), "--",
		Bins(t).IMDS, "serve",
		"--listen", IMDSAddr + ":80",
		"--admin-socket", l.AdminSock,
		"--data-dir", l.DataDir,
		"--publish-dir", l.PubDir,
	}
	args = append(args, extra...)
	p, err := startProc(t, l.HostDir, "imds", false, args...)
	if err != nil {
		t.Fatal(err)
	}
	l.echo(p)
	l.IMDS = p
	if l.Admin == nil {
		l.Admin = client.NewUnix(l.AdminSock)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := waitHealthy(ctx, l.Admin, p); err != nil {
		t.Fatalf("prewarm-imds: %v", err)
	}
}

// waitHealthy retries /healthz with a capped exponential backoff until it
// answers, the process exits or ctx ends.
func waitHealthy(ctx context.Context, c *client.Client, p *Proc) error {
	delay := 2 * time.Millisecond
	for {
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Healthz(hctx)
		cancel()
		if err == nil {
			return nil
		}
		if done, perr := p.Exited(); done {
			return fmt.Errorf("exited before it was healthy (%v); last error %w", perr, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %w (last error %v)", ctx.Err(), err)
		case <-p.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// Register registers every guest by its host interface.
func (l *Lab) Register(ctx context.Context) {
	for _, g := range l.Guests {
		g.Register(ctx)
	}
}

// guestInit is the PID 1 of a guest: it makes the guest's private mounts,
// hides the lab's directory (the admin socket, the other guests), sets the
// hostname and then sleeps; the harness starts everything else with
// nsenter. $1 = backing directory, $2 = lab root to hide, $3 = hostname.
const guestInit = `set -e
G=$1
mount --bind "$G/etc" /etc
mount --bind "$G/home" /home
mount --bind "$G/varlog" /var/log
mount --bind "$G/varlib" /var/lib
mount --bind "$G/run" /run
if [ -d /var/mail ]; then mount --bind "$G/mail" /var/mail; fi
mount -t tmpfs -o size=1m,mode=0755 pwe-hidden "$2"
hostname "$3"
echo ready
exec sleep infinity
`

// boot copies /etc for the guest, starts its holder in fresh UTS, mount
// and PID namespaces inside its network namespace, and waits for it.
func (g *Guest) boot() {
	t := g.Lab.T
	for _, d := range []string{"home", "varlog", "varlib/dhcp", "run", "mail"} {
		if err := os.MkdirAll(filepath.Join(g.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "cp", "-a", "/etc", filepath.Join(g.Dir, "etc"))
	// A private hostname file and a DHCP client hook that writes nothing
	// but the interface's address and default route.
	if err := os.WriteFile(filepath.Join(g.Dir, "etc/hostname"), []byte("localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.Dir, "etc", dhclientHookName), []byte(dhclientHook), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := startProc(t, g.Dir, "holder", false,
		"nsenter", "--net="+g.NS.Path(), "--",
		"unshare", "--uts", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private",
		"--", "sh", "-c", guestInit, "guest-init", g.Dir, g.Lab.Root, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	g.holder = p
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := p.Log.WaitFrom(ctx, 0, "ready"); err != nil {
		t.Fatalf("guest %s: holder: %v", g.ID, err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid))
	if err != nil || len(strings.Fields(string(b))) == 0 {
		t.Fatalf("guest %s: no PID 1 under unshare %d: %v", g.ID, p.cmd.Process.Pid, err)
	}
	fmt.Sscan(strings.Fields(string(b))[0], &g.pid1)
	// Killing unshare kills PID 1 (--kill-child), which takes every process
	// of the guest's PID namespace with it.
	t.Cleanup(func() { p.Signal(syscall.SIGKILL); p.Wait(10 * time.Second) })
}

// enter is the nsenter prefix that runs a command in all the guest's
// namespaces.
func (g *Guest) enter(argv ...string) []string {
	return append([]string{"nsenter", "-t", fmt.Sprint(g.pid1), "-n", "-u", "-m", "-p", "--"}, argv...)
}

// Exec runs a command in the guest and returns its output.
func (g *Guest) Exec(ctx context.Context, argv ...string) (string, error) {
	return run(ctx, g.enter(argv...)...)
}

// MustExec is Exec bounded by 30 s, failing the test on error.
func (g *Guest) MustExec(argv ...string) string {
	g.Lab.T.Helper()
	return mustRun(g.Lab.T, g.enter(argv...)...)
}

// Start starts a long-running command in the guest.
func (g *Guest) Start(name string, argv ...string) *Proc {
	p, err := startProc(g.Lab.T, g.Dir, name, true, g.enter(argv...)...)
	if err != nil {
		g.Lab.T.Fatal(err)
	}
	g.Lab.echo(p)
	return p
}

// Path maps a path inside the guest to its backing file on the host.
func (g *Guest) Path(p string) string {
	for _, m := range [][2]string{{"/etc", "etc"}, {"/home", "home"}, {"/var/log", "varlog"}, {"/var/lib", "varlib"}, {"/run", "run"}} {
		if p == m[0] || strings.HasPrefix(p, m[0]+"/") {
			return filepath.Join(g.Dir, m[1], strings.TrimPrefix(p, m[0]))
		}
	}
	panic("e2e: no backing directory for guest path " + p)
}

// dhclientArgs is how the guest's dhclient runs: private lease and PID
// files and the harness's hook (no resolv.conf, no hostname).
func (g *Guest) dhclientArgs() []string {
	return []string{"dhclient", "-4", "-1", "-sf", "/etc/" + dhclientHookName,
		"-lf", "/var/lib/dhcp/dhclient.eth0.leases", "-pf", "/run/dhclient.eth0.pid", "eth0"}
}

// StartDHCP runs dhclient in the guest and returns once it holds a lease
// (dhclient -1 backgrounds itself only then).
func (g *Guest) StartDHCP(ctx context.Context) error {
	_, err := g.Exec(ctx, g.dhclientArgs()...)
	if err != nil {
		return fmt.Errorf("guest %s: dhclient: %w", g.ID, err)
	}
	return nil
}

// Addrs lists the guest's global IPv4 addresses on eth0 ("10.77.1.10/24").
func (g *Guest) Addrs(ctx context.Context) ([]string, error) {
	out, err := g.Exec(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0", "scope", "global")
	if err != nil {
		return nil, err
	}
	var as []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				as = append(as, f[i+1])
			}
		}
	}
	return as, nil
}

// Register registers the guest's instance by its host interface.
func (g *Guest) Register(ctx context.Context) {
	t := g.Lab.T
	t.Helper()
	if _, err := g.Lab.Admin.Register(ctx, g.ID, registration(g.HostIf)); err != nil {
		t.Fatalf("register %s: %v", g.ID, err)
	}
}

// Remap is the host's half of a claim: the guest's network moves to Net2
// (a gateway address on the host end, a new DHCP reservation, dnsmasq
// re-reading it). The guest learns of it by a link bounce or renewDhcp.
func (g *Guest) Remap(ctx context.Context) error {
	return g.Reserve(ctx, g.Addr2, g.GW2)
}

// Reserve points the guest's DHCP reservation at addr (gateway gw, which
// the host end gets as an address) and waits until dnsmasq re-read it.
func (g *Guest) Reserve(ctx context.Context, addr, gw netip.Addr) error {
	l := g.Lab
	l.hostsMu.Lock()
	defer l.hostsMu.Unlock()
	if _, err := run(ctx, "ip", "-n", l.HostNS.Name, "addr", "replace", gw.String()+"/24", "dev", g.HostIf); err != nil {
		return err
	}
	g.reserved = addr
	from := l.Dnsmasq.Log.Len()
	l.writeHosts()
	if err := l.Dnsmasq.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	if _, _, err := l.Dnsmasq.Log.WaitFunc(ctx, from, l.hostsRead); err != nil {
		return fmt.Errorf("dnsmasq did not re-read its reservations: %w", err)
	}
	return nil
}

// LinkDown and LinkUp set the host end of the guest's veth down or up
// (the hypervisor-side NIC bounce); LinkUp returns when it was done.
func (g *Guest) LinkDown(ctx context.Context) error {
	_, err := run(ctx, "ip", "-n", g.Lab.HostNS.Name, "link", "set", g.HostIf, "down")
	return err
}

// LinkUp sets the host end up and returns the time it did.
func (g *Guest) LinkUp(ctx context.Context) (time.Time, error) {
	_, err := run(ctx, "ip", "-n", g.Lab.HostNS.Name, "link", "set", g.HostIf, "up")
	return time.Now(), err
}

// Bounce sets the host end down and up again.
func (g *Guest) Bounce(ctx context.Context) (time.Time, error) {
	if err := g.LinkDown(ctx); err != nil {
		return time.Time{}, err
	}
	return g.LinkUp(ctx)
}

// StartAgent starts prewarm-agent in the guest on its default directories
// (which are the guest's private /var/lib, /var/log and /run) and root
// (the guest's private /etc and /home), managing eth0.
func (g *Guest) StartAgent(extra ...string) *Proc {
	args := append([]string{Bins(g.Lab.T).Agent, "run",
		"--imds-url", "http://" + IMDSAddr,
		"--interfaces", "eth0",
	}, extra...)
	g.Agent = g.Start("agent", args...)
	return g.Agent
}
