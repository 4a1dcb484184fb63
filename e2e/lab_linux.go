package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
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
	netlab.RequireRoot(t, "nsenter", "unshare", "dnsmasq", "dhclient")
}

// Lab is one host: a network namespace with the guests' gateways and
// 169.254.169.254, running dnsmasq and prewarm-imds.
type Lab struct {
	T      testing.TB
	Name   string // prefix of every namespace: pwe-<pid>-<seq>
	Root   string // everything of the lab on disk
	HostNS *netlab.Netns
	Guests []*Guest

	HostDir   string // Root/host: the IMDS's data, admin socket, publish dir
	AdminSock string
	DataDir   string
	PubDir    string

	Dnsmasq *netlab.Dnsmasq
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
	l.HostNS = netlab.NewNetns(t, name+"-h")
	return l
}

// Guest is one guest: a network namespace joined to the lab's host
// namespace by a veth pair (HostIf on the host, eth0 in the guest), plus a
// holder process that owns the guest's UTS, mount and PID namespaces.
type Guest struct {
	Lab    *Lab
	Index  int
	ID     string // instance id: vm-<index>
	NS     *netlab.Netns
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
	g.NS = netlab.NewNetns(t, fmt.Sprintf("%s-g%d", l.Name, i))
	netlab.Veth(t, l.HostNS, g.HostIf, g.NS, "eth0", g.MAC)
	l.hostSide(g)
	g.StaticIf = fmt.Sprintf("vs%d", i)
	g.StaticMAC = fmt.Sprintf("52:54:00:78:00:%02x", i)
	g.StaticNet = netip.MustParsePrefix(fmt.Sprintf("192.168.%d.0/24", 100+i))
	g.StaticGW = netip.MustParseAddr(fmt.Sprintf("192.168.%d.254", 100+i))
	netlab.Veth(t, l.HostNS, g.StaticIf, g.NS, "eth1", g.StaticMAC)
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

// hosts is dnsmasq's reservations (MAC → address) for every guest.
func (l *Lab) hosts() []netlab.Host {
	var hs []netlab.Host
	for _, g := range l.Guests {
		hs = append(hs, netlab.Host{MAC: g.MAC, Addr: g.reserved.String(), Name: g.ID})
	}
	return hs
}

// StartDnsmasq starts dnsmasq on the guests' host interfaces with the
// reservations of every guest.
func (l *Lab) StartDnsmasq() {
	cfg := netlab.DnsmasqConfig{Dir: l.HostDir, Hosts: l.hosts()}
	for _, g := range l.Guests {
		cfg.Interfaces = append(cfg.Interfaces, g.HostIf)
		cfg.Ranges = append(cfg.Ranges,
			g.Net1.Addr().String()+",static,255.255.255.0,1h",
			g.Net2.Addr().String()+",static,255.255.255.0,1h")
	}
	l.Dnsmasq = netlab.StartDnsmasq(l.T, l.HostNS, cfg)
	l.echo(l.Dnsmasq.Proc)
}

func (l *Lab) echo(p *Proc) {
	if l.Echo != nil {
		name := p.Name
		p.Log.SetEcho(func(s string) { l.Echo(name, s) })
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
	// A private hostname file.
	if err := os.WriteFile(filepath.Join(g.Dir, "etc/hostname"), []byte("localhost\n"), 0o644); err != nil {
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
	g.pid1, err = netlab.FirstChild(p.StartedPID(), 2*time.Second)
	if err != nil {
		t.Fatalf("guest %s: no PID 1 under unshare: %v", g.ID, err)
	}
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

// DHCPClient is how the guest runs a DHCP client of the given kind
// (netlab.Dhclient, Dhcpcd, Udhcpc) on eth0: its hook, lease, PID and
// config files in the guest's private /run (dhclient's PID file is
// /run/dhclient.eth0.pid).
func (g *Guest) DHCPClient(kind string) netlab.DHCPClient {
	return netlab.DHCPClient{Kind: kind, Iface: "eth0", Dir: "/run", WriteDir: g.Path("/run")}
}

// StartDHCP runs dhclient in the guest and returns once it holds a lease
// (dhclient -1 backgrounds itself only then).
func (g *Guest) StartDHCP(ctx context.Context) error {
	argv, err := g.DHCPClient(netlab.Dhclient).Argv()
	if err != nil {
		return fmt.Errorf("guest %s: %w", g.ID, err)
	}
	// A PID file left by an earlier dhclient would name a gone process
	// (or, in the guest's PID namespace, another one) to StopDHCP.
	c := g.DHCPClient(netlab.Dhclient)
	if err := os.Remove(filepath.Join(c.WriteDir, filepath.Base(c.PIDFile()))); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("guest %s: %w", g.ID, err)
	}
	if _, err := g.Exec(ctx, argv...); err != nil {
		return fmt.Errorf("guest %s: dhclient: %w", g.ID, err)
	}
	return nil
}

// StopDHCP kills the dhclient that StartDHCP left running. dhclient -1
// returns once it holds a lease, but its background child writes the PID
// file a moment later: wait for the file (up to 5 s), then kill that PID.
func (g *Guest) StopDHCP(ctx context.Context) error {
	c := g.DHCPClient(netlab.Dhclient)
	path := filepath.Join(c.WriteDir, filepath.Base(c.PIDFile()))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		b, err := os.ReadFile(path)
		// PID 1 is the guest's namespace holder, never dhclient.
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 1 {
			if _, err := g.Exec(ctx, "kill", strconv.Itoa(pid)); err != nil {
				return fmt.Errorf("guest %s: kill dhclient %d: %w", g.ID, pid, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("guest %s: no dhclient PID in %s: %w", g.ID, c.PIDFile(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Addrs lists the guest's global IPv4 addresses on eth0 ("10.77.1.10/24").
func (g *Guest) Addrs(ctx context.Context) ([]string, error) {
	out, err := g.Exec(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0", "scope", "global")
	if err != nil {
		return nil, err
	}
	return netlab.ParseAddrs(out), nil
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
	return l.Dnsmasq.SetHosts(ctx, l.hosts()...)
}

// LinkDown and LinkUp set the host end of the guest's veth down or up
// (the hypervisor-side NIC bounce); LinkUp returns when it was done.
func (g *Guest) LinkDown(ctx context.Context) error {
	return g.Lab.HostNS.LinkUp(ctx, g.HostIf, false)
}

// LinkUp sets the host end up and returns the time it did.
func (g *Guest) LinkUp(ctx context.Context) (time.Time, error) {
	err := g.Lab.HostNS.LinkUp(ctx, g.HostIf, true)
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
