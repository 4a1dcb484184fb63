package dhcp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/linux/nl"
)

// Options configure a Renewer.
type Options struct {
	// Client overrides detection: "dhclient", "dhcpcd", "udhcpc",
	// "networkd", "networkmanager" or "builtin" ("" = detect).
	Client string
	// Interfaces restricts the interfaces considered (nil = every
	// non-loopback interface).
	Interfaces []string
	// StateDir holds the built-in client's lease records.
	StateDir string
	Runner   run.Runner
	Logger   *slog.Logger
	// Timeout bounds one renewal (default 20s).
	Timeout time.Duration
	// ProcDir and RunDir default to /proc and /run.
	ProcDir, RunDir string
}

// Renewer implements agent.DHCPRenewer.
type Renewer struct {
	o   Options
	log *slog.Logger
	// mu serializes renewals: two at once would fight over one client
	// (or over the built-in client's state file).
	mu sync.Mutex

	timersMu sync.Mutex
	timers   map[string]*time.Timer // built-in lease renewals, by interface

	noted map[string]bool // noteHostName's warnings given, by client, PID and name (under mu)
}

var _ agent.DHCPRenewer = (*Renewer)(nil)

// ErrUnknownClient is returned for an override naming no supported client.
var ErrUnknownClient = errors.New("unknown DHCP client")

// New returns a Renewer.
func New(o Options) (*Renewer, error) {
	switch o.Client {
	case "", Dhclient, Dhcpcd, Udhcpc, Networkd, NetworkManager, Builtin:
	default:
		return nil, fmt.Errorf("DHCP client %q: %w", o.Client, ErrUnknownClient)
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	o.ProcDir = cmp.Or(o.ProcDir, "/proc")
	o.RunDir = cmp.Or(o.RunDir, "/run")
	log, runner := run.Defaults(o.Logger, o.Runner)
	o.Runner = runner
	return &Renewer{o: o, log: log.With("component", "dhcp")}, nil
}

func (r *Renewer) owner(iface string, index int) owner {
	if r.o.Client == Builtin {
		// Nothing to find or signal: no scan of every process's /proc
		// files on each renewal (tens of ms in a TCG guest, on a claim's path).
		return owner{Client: Builtin}
	}
	ow := detect(r.o.ProcDir, r.o.RunDir, iface, index)
	if r.o.Client != "" && r.o.Client != ow.Client {
		// The override names the client; a running one of that kind is
		// still found, so it can be signalled.
		return owner{Client: r.o.Client}
	}
	return ow
}

// DHCPInterfaces implements agent.DHCPRenewer: the interfaces a client owns,
// those the built-in client leased before, and those holding an address
// with a finite lifetime. With the built-in client named, nothing else
// owns an interface: its interfaces are those AcquireAtStart leases
// (Options.Interfaces, else those backed by a device) and those it leased
// before; not every interface (a bridge, a tunnel, a veth of a container:
// each renewal for renewDhcp or a new host name ran DHCP on them, the
// platform held until it timed out).
func (r *Renewer) DHCPInterfaces(ctx context.Context) ([]string, error) {
	c, err := nl.Dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	links, err := c.Links()
	if err != nil {
		return nil, err
	}
	st := r.loadState()
	var out []string
	for _, l := range links {
		if l.Loopback || (r.o.Interfaces != nil && !slices.Contains(r.o.Interfaces, l.Name)) {
			continue
		}
		if _, ok := st[l.Name]; ok {
			out = append(out, l.Name)
			continue
		}
		if r.o.Client == Builtin {
			if r.o.Interfaces != nil || hasDevice(l.Name) {
				out = append(out, l.Name)
			}
			continue
		}
		if ow := r.owner(l.Name, l.Index); ow.Client != Builtin {
			out = append(out, l.Name)
			continue
		}
		as, err := c.Addrs(l.Index)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			if a.Prefix.Addr().Is4() && !a.Permanent && a.Scope == 0 {
				out = append(out, l.Name)
				break
			}
		}
	}
	return out, nil
}

// RenewDHCP implements agent.DHCPRenewer. Every client sends the current
// host name (currentHostName), so the renewal after the hostname step
// carries the claim's name, without the interface going down. The
// built-in client starts with DISCOVER: the agent renews after a link
// event or a renewDhcp change, when the network may have been re-mapped.
func (r *Renewer) RenewDHCP(ctx context.Context, iface string) (agent.Lease, error) {
	return r.renew(ctx, iface, false)
}

// renew is RenewDHCP; atT1 (the built-in client's own timer) first tries
// a RENEW of the lease it holds.
func (r *Renewer) renew(ctx context.Context, iface string, atT1 bool) (agent.Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	c, err := nl.Dial()
	if err != nil {
		return agent.Lease{}, err
	}
	defer c.Close()
	link, err := c.LinkByName(iface)
	if err != nil {
		return agent.Lease{}, fmt.Errorf("renew DHCP on %s: %w", iface, err)
	}
	ow := r.owner(iface, link.Index)
	log := r.log.With("interface", iface, "client", ow.Client)
	host := currentHostName()
	log.Info("renewing DHCP lease", "pid", ow.PID, "hostname", host.Name())
	var before []netip.Prefix // the agent reports the addresses the renewal replaced
	if as, aerr := c.Addrs(link.Index); aerr == nil {
		before = nl.GlobalPrefixes(as)
	}
	start := time.Now()
	switch {
	case ow.Client == Builtin && atT1:
		err = r.renewBuiltinT1(ctx, c, link, host)
	case ow.Client == Builtin:
		err = r.renewBuiltin(ctx, c, link, host)
	case ow.Client == Dhclient:
		err = r.renewDhclient(ctx, ow, iface, host)
	case ow.Client == Udhcpc && ow.PID != 0 && udhcpcHostName(ow.Argv) != host.Name() && !udhcpcForeground(ow.Argv):
		err = r.renewAndWait(ctx, link.Index, 0, func() error { return r.restartUdhcpc(ctx, ow, host) })
	case ow.Client == Networkd || ow.Client == NetworkManager:
		err = r.renewAndWait(ctx, link.Index, 0, func() error {
			return r.renewManager(ctx, ow.Client, iface, host, func() error { return r.trigger(ctx, ow, iface) })
		})
	default:
		r.noteHostName(ow, host)
		err = r.renewAndWait(ctx, link.Index, 0, func() error { return r.trigger(ctx, ow, iface) })
	}
	if err != nil {
		log.Warn("DHCP renewal failed", "err", err)
		return agent.Lease{Interface: iface, Client: ow.Client, Previous: before}, fmt.Errorf("renew DHCP on %s via %s: %w", iface, ow.Client, err)
	}
	as, err := c.Addrs(link.Index)
	if err != nil {
		return agent.Lease{}, err
	}
	lease := agent.Lease{Interface: iface, Addresses: nl.GlobalPrefixes(as), Client: ow.Client, Previous: before}
	log.Info("DHCP lease renewed", "addresses", fmt.Sprint(lease.Addresses), "ms", time.Since(start).Milliseconds())
	return lease, nil
}

// trigger asks a running client (or a manager) to renew.
func (r *Renewer) trigger(ctx context.Context, ow owner, iface string) error {
	switch ow.Client {
	case Udhcpc:
		if ow.PID == 0 {
			return fmt.Errorf("no running udhcpc for %s", iface)
		}
		// SIGUSR2 releases and SIGUSR1 then starts over with DISCOVER. A
		// plain renew (SIGUSR1 alone) would, on a re-mapped network, get a
		// NAK, after which udhcpc sleeps 3 s before discovering. The two
		// must arrive in that order: Linux delivers pending signals lowest
		// number first, so with both pending at once (udhcpc not scheduled
		// between the two kills, as on a loaded one-CPU guest) the renew
		// came first and the release last, and udhcpc stayed released with
		// no address (seen in the QEMU guest). SIGUSR1 waits until SIGUSR2
		// is no longer pending.
		if err := syscall.Kill(ow.PID, syscall.SIGUSR2); err != nil {
			return fmt.Errorf("signal udhcpc %d: %w", ow.PID, err)
		}
		if err := waitDelivered(ctx, r.o.ProcDir, ow.PID, syscall.SIGUSR2); err != nil {
			return fmt.Errorf("signal udhcpc %d: %w", ow.PID, err)
		}
		if err := syscall.Kill(ow.PID, syscall.SIGUSR1); err != nil {
			return fmt.Errorf("signal udhcpc %d: %w", ow.PID, err)
		}
		return nil
	case Dhcpcd:
		// -n asks the running dhcpcd, over its control socket, to rebind.
		_, err := r.o.Runner.Run(ctx, run.Cmd{Name: "dhcpcd", Args: dhcpcdControlArgs(ow.Argv, "-n", iface)})
		return err
	case Networkd:
		_, err := r.o.Runner.Run(ctx, run.Cmd{Name: "networkctl", Args: []string{"renew", iface}})
		return err
	case NetworkManager:
		_, err := r.o.Runner.Run(ctx, run.Cmd{Name: "nmcli", Args: []string{"device", "up", iface}})
		return err
	}
	return fmt.Errorf("client %q: %w", ow.Client, ErrUnknownClient)
}

// waitDelivered waits until sig is no longer pending for pid (its handler
// ran), reading the pending masks of /proc/PID/status every millisecond,
// for at most 2 s. A status it cannot read (the process is gone, or no
// /proc) ends the wait: the next signal then reports what is wrong.
func waitDelivered(ctx context.Context, procDir string, pid int, sig syscall.Signal) error {
	bit := uint64(1) << (uint(sig) - 1)
	for i := 0; i < 2000; i++ {
		b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "status"))
		if err != nil {
			return nil
		}
		pending := false
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || (k != "SigPnd" && k != "ShdPnd") {
				continue
			}
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&bit != 0 {
				pending = true
			}
		}
		if !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return fmt.Errorf("signal %v still pending after 2 s", sig)
}

// renewAndWait triggers a renewal and waits for the client to put an
// address on the link (a new one, or the old one with fresh lifetimes).
// With grace > 0 it first waits that long for the client to do so unasked.
func (r *Renewer) renewAndWait(ctx context.Context, index int, grace time.Duration, trigger func() error) error {
	w, err := nl.WatchAddrs()
	if err != nil {
		return err
	}
	defer w.Close()
	got := make(chan error, 1)
	go func() { got <- w.WaitNew(index) }()
	if grace > 0 {
		select {
		case err := <-got:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(grace):
		}
	}
	if err := trigger(); err != nil {
		return err
	}
	select {
	case err := <-got:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no address update from the client: %w", ctx.Err())
	}
}

// renewDhclient restarts dhclient with its own command line: dhclient has
// no renew signal, and a fresh start does INIT-REBOOT (or DISCOVER after a
// NAK) and returns once the lease is bound.
//
// The restarted dhclient sends the host name: its config's "send
// host-name" (Debian's default sends gethostname(), read anew by the new
// process), or a copy of its config with that statement added
// (dhclientConfig).
func (r *Renewer) renewDhclient(ctx context.Context, ow owner, iface string, host hostName) error {
	args := []string{"-4", "-1", iface}
	if ow.PID != 0 {
		args = nil
		for i := 1; i < len(ow.Argv); i++ {
			a := ow.Argv[i]
			if a == "-d" || a == "-nw" {
				continue // wait for the lease; do not stay in the foreground
			}
			if a == "-cf" && i+1 < len(ow.Argv) {
				i++ // put back below, perhaps as the copy
				continue
			}
			args = append(args, a)
		}
	}
	conf, err := dhclientConfig(ow.Argv, r.o.StateDir, iface, host)
	if err != nil {
		return err
	}
	if conf == "" {
		r.log.Warn("dhclient's config sends no host name and there is no state directory for a copy that does", "interface", iface)
		if i := slices.Index(ow.Argv, "-cf"); i >= 0 && i+1 < len(ow.Argv) {
			conf = ow.Argv[i+1]
		}
	}
	if conf != "" {
		args = append([]string{"-cf", conf}, args...)
	}
	if ow.PID != 0 {
		if err := stopProcess(ctx, r.o.ProcDir, ow.PID); err != nil {
			return err
		}
	}
	_, err = r.o.Runner.Run(ctx, run.Cmd{Name: "dhclient", Args: args})
	return err
}

// stopProcess sends SIGTERM and waits (bounded) for pid to exit.
func stopProcess(ctx context.Context, procDir string, pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop process %d: %w", pid, err)
	}
	delay := 2 * time.Millisecond
	for i := 0; i < 40; i++ {
		if exited(procDir, pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
	if _, err := os.Stat(procDir + "/" + strconv.Itoa(pid)); err == nil {
		return fmt.Errorf("process %d did not exit after SIGTERM", pid)
	}
	return nil
}

// dhcpcdControlArgs builds a control command for a running dhcpcd. Its
// control socket is named after its protocol flags (eth0-4.sock for a
// "dhcpcd -4 eth0"), so the command must repeat them, or it finds no socket
// and starts a second dhcpcd instead. dhcpcd rewrites its argv into a
// title ("dhcpcd: eth0 [ip4]"), from which the flags are read back.
func dhcpcdControlArgs(argv []string, cmd, iface string) []string {
	w := words(argv)
	has := func(s ...string) bool {
		for _, x := range s {
			if slices.Contains(w, x) {
				return true
			}
		}
		return false
	}
	args := []string{cmd}
	v4, v6 := has("-4", "--ipv4only", "[ip4]"), has("-6", "--ipv6only", "[ip6]")
	switch {
	case v4 && !v6:
		args = append(args, "-4")
	case v6 && !v4:
		args = append(args, "-6")
	}
	for i, x := range w {
		if (x == "-f" || x == "--config") && i+1 < len(w) {
			args = append(args, "-f", w[i+1])
		}
	}
	return append(args, iface)
}
