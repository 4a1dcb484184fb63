package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// systemd's notification protocol (sd_notify(3)): prewarm-imds runs as a
// Type=notify unit, says READY=1 once it serves, keeps a STATUS= line of
// what it serves (systemctl status shows it) and says STOPPING=1 when it
// shuts down.

// notifyEvery bounds how stale the STATUS= line's parked-poll count may
// get: polls park and are answered without a fleet change.
const notifyEvery = 5 * time.Second

// notifyMinGap is the least time between two STATUS= lines, so a burst of
// reports is one line.
const notifyMinGap = time.Second

// NotifySystemd says READY=1 with a first STATUS= line to the service
// manager at $NOTIFY_SOCKET, then keeps STATUS= current (on each change of
// the fleet, at most once a second, and every few seconds for the parked
// polls) until ctx ends or Shutdown starts, and says STOPPING=1 then. It
// returns at once, having done nothing, when $NOTIFY_SOCKET is unset (not
// started by systemd as Type=notify). Call it once everything is served.
func (s *Server) NotifySystemd(ctx context.Context) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		s.log.Warn("sd_notify: cannot reach the service manager", "addr", addr, "err", err)
		return
	}
	defer c.Close()
	send := func(state string) {
		if _, err := c.Write([]byte(state)); err != nil {
			s.log.Warn("sd_notify", "addr", addr, "err", err)
		}
	}
	last := s.StatusLine()
	send("READY=1\nSTATUS=" + last)
	tick := time.NewTicker(notifyEvery)
	defer tick.Stop()
	for {
		changed := s.fleet.changed()
		select {
		case <-changed:
			select {
			case <-time.After(notifyMinGap):
			case <-ctx.Done():
			case <-s.shutdown:
			}
		case <-tick.C:
		case <-ctx.Done():
		case <-s.shutdown:
		}
		select {
		case <-ctx.Done():
			send("STOPPING=1\nSTATUS=shutting down")
			return
		case <-s.shutdown:
			send("STOPPING=1\nSTATUS=shutting down")
			return
		default:
		}
		if line := s.StatusLine(); line != last {
			send("STATUS=" + line)
			last = line
		}
	}
}

// StatusLine is the server's one-line status, systemd's STATUS=:
// "12 instances (9 provisioned, 2 partial-ready, 1 none; 1 stale), 11
// parked polls", with "store degraded" in front while a shared store is
// unreachable.
func (s *Server) StatusLine() string {
	counts, stale := s.fleetCounts()
	total := 0
	var parts []string
	for _, st := range append(reportStates, stateNone) {
		if n := counts[st]; n > 0 {
			total += n
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	var b strings.Builder
	if s.StoreHealth() != nil {
		b.WriteString("store degraded, serving read-only; ")
	}
	noun := "instances"
	if total == 1 {
		noun = "instance"
	}
	fmt.Fprintf(&b, "%d %s", total, noun)
	if len(parts) > 0 || stale > 0 {
		b.WriteString(" (" + strings.Join(parts, ", "))
		if stale > 0 {
			fmt.Fprintf(&b, "; %d stale", stale)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, ", %d parked polls", s.parkedPolls())
	return b.String()
}

// parkedPolls is the number of guest long-polls waiting now.
func (s *Server) parkedPolls() int {
	return int(s.m.parkedGuest.Value())
}
