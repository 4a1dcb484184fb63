package netlab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DnsmasqConfig is what a Dnsmasq serves.
type DnsmasqConfig struct {
	// Dir holds its files: dnsmasq.hosts (the reservations),
	// dnsmasq.leases, dnsmasq.pid and dnsmasq.log. Required.
	Dir string
	// Interfaces it serves (--interface, with --bind-interfaces). Required.
	Interfaces []string
	// Ranges are --dhcp-range values ("10.77.0.100,10.77.0.199,255.255.255.0,2m",
	// "10.77.1.0,static,255.255.255.0,1h"). Required.
	Ranges []string
	// Options are --dhcp-option values ("3,10.77.0.1").
	Options []string
	// Hosts are the first reservations.
	Hosts []Host
}

// Host is one reservation: a MAC's address, and optionally a host name.
type Host struct{ MAC, Addr, Name string }

func (h Host) line() string {
	if h.Name != "" {
		return h.MAC + "," + h.Addr + "," + h.Name
	}
	return h.MAC + "," + h.Addr
}

// Dnsmasq is a DHCP server running in the foreground in a namespace. It
// touches no system configuration: --conf-file=/dev/null, --port=0 (no
// DNS), private files under its Dir.
type Dnsmasq struct {
	*Proc
	HostsFile string
	// LeaseFile is its --dhcp-leasefile (Leases reads it).
	LeaseFile string

	mu sync.Mutex // one SetHosts at a time
}

// StartDnsmasq starts dnsmasq in ns and returns once it has read its
// reservations. It is stopped by PID when the test ends.
func StartDnsmasq(t testing.TB, ns *Netns, cfg DnsmasqConfig) *Dnsmasq {
	t.Helper()
	Require(t, "dnsmasq", "nsenter")
	switch {
	case cfg.Dir == "":
		t.Fatal("netlab.DnsmasqConfig.Dir: required")
	case len(cfg.Interfaces) == 0:
		t.Fatal("netlab.DnsmasqConfig.Interfaces: at least one interface is required")
	case len(cfg.Ranges) == 0:
		t.Fatal("netlab.DnsmasqConfig.Ranges: at least one --dhcp-range is required")
	}
	d := &Dnsmasq{HostsFile: filepath.Join(cfg.Dir, "dnsmasq.hosts"), LeaseFile: filepath.Join(cfg.Dir, "dnsmasq.leases")}
	if err := d.writeHosts(cfg.Hosts); err != nil {
		t.Fatal(err)
	}
	args := []string{"nsenter", "--net=" + ns.Path(), "--",
		"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--bind-interfaces", "--except-interface=lo",
		"--dhcp-hostsfile=" + d.HostsFile,
		"--dhcp-leasefile=" + d.LeaseFile,
		"--pid-file=" + filepath.Join(cfg.Dir, "dnsmasq.pid"),
		// --no-ping: without it every first lease waits 3 s for an echo.
		"--dhcp-authoritative", "--no-ping", "--user=root", "--log-dhcp", "--log-facility=-",
	}
	for _, i := range cfg.Interfaces {
		args = append(args, "--interface="+i)
	}
	for _, r := range cfg.Ranges {
		args = append(args, "--dhcp-range="+r)
	}
	for _, o := range cfg.Options {
		args = append(args, "--dhcp-option="+o)
	}
	p, err := StartProc(t, cfg.Dir, "dnsmasq", false, args...)
	if err != nil {
		t.Fatal(err)
	}
	d.Proc = p
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := p.Log.WaitFunc(ctx, 0, d.hostsRead); err != nil {
		if done, perr := p.Exited(); done {
			dumpTail(t, "dnsmasq", p.Log.Lines(), 20)
			t.Fatalf("dnsmasq exited at start: %v", perr)
		}
		t.Fatalf("dnsmasq did not start: %v", err)
	}
	return d
}

// hostsRead matches dnsmasq's line saying it read the reservations.
func (d *Dnsmasq) hostsRead(line string) bool {
	return strings.HasSuffix(line, "]: read "+d.HostsFile)
}

// writeHosts replaces the reservations file atomically.
func (d *Dnsmasq) writeHosts(hosts []Host) error {
	var b strings.Builder
	for _, h := range hosts {
		b.WriteString(h.line() + "\n")
	}
	tmp := d.HostsFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, d.HostsFile)
}

// SetHosts replaces every reservation with hosts, tells dnsmasq (SIGHUP)
// and returns once it has re-read them.
func (d *Dnsmasq) SetHosts(ctx context.Context, hosts ...Host) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	from := d.Log.Len()
	if err := d.writeHosts(hosts); err != nil {
		return err
	}
	if err := d.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	if _, _, err := d.Log.WaitFunc(ctx, from, d.hostsRead); err != nil {
		return fmt.Errorf("dnsmasq did not re-read its reservations: %w", err)
	}
	return nil
}
