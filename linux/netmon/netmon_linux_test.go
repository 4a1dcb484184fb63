package netmon

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prewarm/prewarm/agent"
	"golang.org/x/sys/unix"
)

// link describes one canned rtnetlink link message.
type link struct {
	index   int
	name    string
	up      bool // IFF_UP
	carrier bool
	changes uint32
	lo      bool
	del     bool
	// pending: operstate down although the carrier is on (the kernel's
	// link watch has not yet run since the carrier came)
	pending bool
}

func (l link) msg() netlink.Message {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:8], uint32(l.index))
	var flags uint32
	if l.up {
		flags |= unix.IFF_UP
	}
	if l.lo {
		flags |= unix.IFF_LOOPBACK
	}
	binary.NativeEndian.PutUint32(b[8:12], flags)
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, l.name)
	ae.Bytes(unix.IFLA_ADDRESS, []byte{0x52, 0x54, 0, 0, 0, byte(l.index)})
	c, oper := uint8(0), uint8(operDown)
	if l.carrier {
		c, oper = 1, operUp
		if l.pending {
			oper = operDown
		}
	}
	ae.Uint8(unix.IFLA_CARRIER, c)
	ae.Uint8(unix.IFLA_OPERSTATE, oper)
	ae.Uint32(unix.IFLA_CARRIER_CHANGES, l.changes)
	attrs, err := ae.Encode()
	if err != nil {
		panic(err)
	}
	typ := netlink.HeaderType(unix.RTM_NEWLINK)
	if l.del {
		typ = unix.RTM_DELLINK
	}
	return netlink.Message{Header: netlink.Header{Type: typ}, Data: append(b, attrs...)}
}

func msgs(ls ...link) []netlink.Message {
	var out []netlink.Message
	for _, l := range ls {
		out = append(out, l.msg())
	}
	return out
}

type recv struct {
	msgs []netlink.Message
	err  error
}

// fakeConn hands out canned receives, then blocks until closed.
type fakeConn struct {
	ch     chan recv
	closed chan struct{}
}

func (f *fakeConn) Receive() ([]netlink.Message, error) {
	select {
	case r := <-f.ch:
		return r.msgs, r.err
	case <-f.closed:
		return nil, errClosed
	}
}

func (f *fakeConn) Close() error {
	select {
	case <-f.closed:
	default:
		close(f.closed)
	}
	return nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func startFake(t *testing.T, o Options, initial []link, dump func() []link) (chan recv, <-chan agent.LinkEvent) {
	t.Helper()
	ch := make(chan recv, 16)
	o.Logger = testLogger(t)
	w := New(o)
	first := true
	w.dial = func() (osMon, error) {
		return &nlMon{c: &fakeConn{ch: ch, closed: make(chan struct{})}, dump: func() ([]netlink.Message, error) {
			if first {
				first = false
				return msgs(initial...), nil
			}
			return msgs(dump()...), nil
		}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	evs, err := w.WatchLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ch, evs
}

type want struct {
	kind  agent.LinkEventKind
	iface string
}

func expect(t *testing.T, evs <-chan agent.LinkEvent, ws ...want) {
	t.Helper()
	for _, w := range ws {
		select {
		case e := <-evs:
			if e.Kind != w.kind || e.Interface != w.iface {
				t.Fatalf("event %s %s, want %s %s", e.Kind, e.Interface, w.kind, w.iface)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event, want %s %s", w.kind, w.iface)
		}
	}
	select {
	case e := <-evs:
		t.Fatalf("unexpected event %s %s", e.Kind, e.Interface)
	case <-time.After(50 * time.Millisecond):
	}
}

var (
	lo   = link{index: 1, name: "lo", up: true, carrier: true, lo: true}
	eth0 = link{index: 2, name: "eth0", up: true, carrier: true, changes: 2}
)

func TestWatcherCannedMessages(t *testing.T) {
	down := eth0
	down.carrier, down.changes = false, 3
	up := eth0
	up.changes = 4
	bounce := eth0 // one message, carrier still up, counter up by 2
	bounce.changes = 6
	same := bounce // no counter change: nothing happened to the carrier
	eth1 := link{index: 3, name: "eth1", up: true, carrier: true}
	loFlap := lo
	loFlap.carrier = false
	adminDown := bounce
	adminDown.up = false
	tests := []struct {
		name string
		opts Options
		in   []link
		want []want
	}{
		{"down then up", Options{}, []link{down, up}, []want{{agent.CarrierLost, "eth0"}, {agent.CarrierBack, "eth0"}}},
		{"bounce within rate limit", Options{}, []link{bounce}, []want{{agent.CarrierBack, "eth0"}}},
		{"repeat without change", Options{}, []link{same, same}, []want{{agent.CarrierBack, "eth0"}}},
		{"admin down", Options{}, []link{adminDown}, []want{{agent.CarrierLost, "eth0"}}},
		{"appear and disappear", Options{}, []link{eth1, {index: 3, name: "eth1", del: true}}, []want{{agent.LinkAdded, "eth1"}, {agent.CarrierBack, "eth1"}, {agent.LinkRemoved, "eth1"}}},
		{"loopback ignored", Options{}, []link{loFlap}, nil},
		{"only configured interfaces", Options{Interfaces: []string{"eth1"}}, []link{down, up, eth1}, []want{{agent.LinkAdded, "eth1"}, {agent.CarrierBack, "eth1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, evs := startFake(t, tc.opts, []link{lo, eth0}, nil)
			for _, l := range tc.in {
				ch <- recv{msgs: msgs(l)}
			}
			expect(t, evs, tc.want...)
		})
	}
}

// TestWatcherOperstateCatchingUp: a watch that begins while the kernel's
// link watch has yet to turn a NIC's operational state up (carrier on,
// operstate down: a VM's NIC set up at boot, for up to a second) sees no
// carrier come back when the operational state catches up, as the carrier
// and its change counter stay the same; a later bounce still counts.
func TestWatcherOperstateCatchingUp(t *testing.T) {
	pending := eth0
	pending.pending = true
	bounced := eth0
	bounced.changes += 2
	ch, evs := startFake(t, Options{}, []link{lo, pending}, nil)
	ch <- recv{msgs: msgs(eth0)}
	expect(t, evs)
	ch <- recv{msgs: msgs(bounced)}
	expect(t, evs, want{agent.CarrierBack, "eth0"})

	// A link that was down and comes back is still a carrier back, even
	// in the message before its operational state is up.
	down := eth0
	down.carrier, down.changes = false, 3
	back := eth0
	back.pending, back.changes = true, 4
	ch, evs = startFake(t, Options{}, []link{lo, down}, nil)
	ch <- recv{msgs: msgs(back)}
	expect(t, evs, want{agent.CarrierBack, "eth0"})
	ch <- recv{msgs: msgs(link{index: 2, name: "eth0", up: true, carrier: true, changes: 4})}
	expect(t, evs)
}

func TestWatcherResyncAfterENOBUFS(t *testing.T) {
	eth1 := link{index: 3, name: "eth1", up: true, carrier: true}
	bounced := eth0
	bounced.changes += 2
	ch, evs := startFake(t, Options{}, []link{lo, eth0, eth1}, func() []link { return []link{lo, bounced} })
	ch <- recv{err: &netlink.OpError{Op: "receive", Err: os.NewSyscallError("recvmsg", unix.ENOBUFS)}}
	expect(t, evs, want{agent.CarrierBack, "eth0"}, want{agent.LinkRemoved, "eth1"})
}

func TestWatcherFallsBackToPolling(t *testing.T) {
	// Each state of a link is written whole into a fresh directory and
	// swapped in by renaming a symlink (as /sys/class/net entries are
	// symlinks), so a poll never reads half of one state and half of the
	// next: a 20 ms poller racing file-by-file writes made this test flaky.
	dir, versions := t.TempDir(), t.TempDir()
	version := 0
	write := func(name string, idx int, flags, carrier, changes int) {
		version++
		d := filepath.Join(versions, strconv.Itoa(version))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{
			"ifindex": strconv.Itoa(idx), "flags": "0x" + strconv.FormatInt(int64(flags), 16),
			"carrier": strconv.Itoa(carrier), "carrier_changes": strconv.Itoa(changes),
			"address": "52:54:00:00:00:0" + strconv.Itoa(idx), "operstate": map[int]string{0: "down", 1: "up"}[carrier], "type": "1",
		} {
			if err := os.WriteFile(filepath.Join(d, k), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tmp := filepath.Join(versions, "link.tmp")
		if err := os.Symlink(d, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("eth0", 2, unix.IFF_UP, 1, 2)
	w := New(Options{Logger: testLogger(t), SysClassNet: dir, PollInterval: 20 * time.Millisecond})
	w.dial = func() (osMon, error) { return nil, errors.New("no netlink here") }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, err := w.WatchLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	write("eth0", 2, unix.IFF_UP, 1, 4) // a bounce between two polls
	expect(t, evs, want{agent.CarrierBack, "eth0"})
	write("eth0", 2, unix.IFF_UP, 0, 5)
	expect(t, evs, want{agent.CarrierLost, "eth0"})
	os.Remove(filepath.Join(dir, "eth0"))
	expect(t, evs, want{agent.LinkRemoved, "eth0"})
	cancel()
	for range evs {
	}
}
