package netmgr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
)

// Manager names, as in errors and Lease.Manager.
const (
	Networkd       = "systemd-networkd"
	NetworkManager = "NetworkManager"
)

var (
	// ErrNoBus means there is no system bus to talk to (no socket, or
	// nothing listening on it).
	ErrNoBus = errors.New("no D-Bus system bus")
	// ErrNotRunning means the manager's bus name has no owner.
	ErrNotRunning = errors.New("network manager not running")
)

// Error is a manager's refusal: the D-Bus error it returned for a method.
type Error struct {
	Manager string // Networkd or NetworkManager
	Method  string // the D-Bus method, e.g. "Link.Renew"
	Object  string // what it was about (an interface name)
	Name    string // the D-Bus error name
	Message string // the manager's text
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s %s: %s (%s)", e.Manager, e.Method, e.Object, e.Message, e.Name)
}

// Is makes errors.Is(err, ErrNotRunning) true for a call to a manager that
// is not on the bus.
func (e *Error) Is(target error) bool {
	return target == ErrNotRunning && (e.Name == "org.freedesktop.DBus.Error.ServiceUnknown" || e.Name == "org.freedesktop.DBus.Error.NameHasNoOwner")
}

// wrap turns a D-Bus error into an *Error; other errors get the context.
func wrap(manager, method, object string, err error) error {
	if err == nil {
		return nil
	}
	var de dbus.Error
	if errors.As(err, &de) {
		msg := de.Name
		if len(de.Body) > 0 {
			if s, ok := de.Body[0].(string); ok {
				msg = s
			}
		}
		return &Error{Manager: manager, Method: method, Object: object, Name: de.Name, Message: msg}
	}
	var dp *dbus.Error
	if errors.As(err, &dp) {
		return wrap(manager, method, object, *dp)
	}
	return fmt.Errorf("%s %s %s: %w", manager, method, object, err)
}

// Lease is a DHCPv4 lease as the manager reports it.
type Lease struct {
	Manager   string
	Interface string
	Address   netip.Prefix // the leased address and its prefix
	Server    netip.Addr   // the server that gave it (zero if not told)
	Expires   time.Time    // when the lease ends
}

// Valid reports whether l holds a lease.
func (l Lease) Valid() bool { return l.Address.IsValid() }

// Conn is a connection to the system bus.
type Conn struct {
	bus *dbus.Conn
}

// Dial connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS, else
// /run/dbus/system_bus_socket). A missing or dead socket is ErrNoBus.
func Dial(ctx context.Context) (*Conn, error) {
	return connect(ctx, func() (*dbus.Conn, error) { return dbus.ConnectSystemBus() })
}

// DialAddress connects to the bus at a D-Bus address
// ("unix:path=/run/dbus/system_bus_socket").
func DialAddress(ctx context.Context, addr string) (*Conn, error) {
	return connect(ctx, func() (*dbus.Conn, error) { return dbus.Connect(addr) })
}

// connect runs f (connect, authenticate, Hello), bounded by ctx. f is not
// given ctx: dbus.WithContext would close the connection when ctx ends,
// and ctx bounds only the connecting here. A connection made after ctx
// ended is closed.
func connect(ctx context.Context, f func() (*dbus.Conn, error)) (*Conn, error) {
	type result struct {
		bus *dbus.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		bus, err := f()
		ch <- result{bus, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, dialErr(r.err)
		}
		return &Conn{bus: r.bus}, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.bus != nil {
				r.bus.Close()
			}
		}()
		return nil, fmt.Errorf("connect to the D-Bus system bus: %w", ctx.Err())
	}
}

func dialErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%w: %w", ErrNoBus, err)
	}
	return fmt.Errorf("connect to the D-Bus system bus: %w", err)
}

// Close closes the connection.
func (c *Conn) Close() error { return c.bus.Close() }

// Running reports whether a manager (Networkd or NetworkManager) owns its
// bus name.
func (c *Conn) Running(ctx context.Context, manager string) (bool, error) {
	name := busName(manager)
	if name == "" {
		return false, fmt.Errorf("manager %q: not %q or %q", manager, Networkd, NetworkManager)
	}
	var has bool
	err := c.bus.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has)
	if err != nil {
		return false, wrap("D-Bus", "NameHasOwner", name, err)
	}
	return has, nil
}

func busName(manager string) string {
	switch manager {
	case Networkd:
		return "org.freedesktop.network1"
	case NetworkManager:
		return "org.freedesktop.NetworkManager"
	}
	return ""
}

// watch subscribes to the PropertiesChanged signals that sender emits on
// objects under path (path itself and below). The returned channel is
// closed by stop.
func (c *Conn) watch(ctx context.Context, sender string, path dbus.ObjectPath) (<-chan *dbus.Signal, func(), error) {
	opts := []dbus.MatchOption{
		dbus.WithMatchSender(sender),
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
		dbus.WithMatchMember("PropertiesChanged"),
		dbus.WithMatchPathNamespace(path),
	}
	if err := c.bus.AddMatchSignalContext(ctx, opts...); err != nil {
		return nil, nil, fmt.Errorf("subscribe to %s's PropertiesChanged: %w", sender, err)
	}
	ch := make(chan *dbus.Signal, 64)
	c.bus.Signal(ch)
	stop := func() {
		c.bus.RemoveSignal(ch)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.bus.RemoveMatchSignalContext(ctx, opts...)
	}
	return ch, stop, nil
}

// await calls check until it reports done: first, then with each signal
// that arrives on sig, and otherwise on a backoff from 10 ms doubling to
// 200 ms with a nil signal (a manager may change what check reads without
// a signal), until ctx ends. A wait that ctx ends (or a check error once
// ctx has ended) is an error that says, in what's words, what the manager
// showed last (what is called then), wrapping ctx's error; check's other
// errors are returned as they are.
func await(ctx context.Context, sig <-chan *dbus.Signal, check func(*dbus.Signal) (bool, error), what func() string) error {
	err := awaitLoop(ctx, sig, check)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what(), ctx.Err())
	}
	return err
}

func awaitLoop(ctx context.Context, sig <-chan *dbus.Signal, check func(*dbus.Signal) (bool, error)) error {
	delay := 10 * time.Millisecond
	t := time.NewTimer(delay)
	defer t.Stop()
	var s *dbus.Signal
	for {
		done, err := check(s)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case s = <-sig:
		case <-t.C:
			s = nil
			delay = min(delay*2, 200*time.Millisecond)
			t.Reset(delay)
		}
	}
}

// drain discards the signals already received.
func drain(sig <-chan *dbus.Signal) {
	for {
		select {
		case <-sig:
		default:
			return
		}
	}
}

// ipv4 parses a dotted IPv4 address ("" or junk: the zero Addr).
func ipv4(s string) netip.Addr {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return netip.Addr{}
	}
	return a
}
