package netmgr_test

// ROOT TEST. The managers run for real: a Debian 12 root (debootstrap
// minbase + systemd, dbus, NetworkManager; cached as a tarball under
// PREWARM_CI_CACHE, default /var/cache/prewarm-ci) boots with systemd as
// PID 1 under systemd-nspawn, in a network namespace whose eth0 is a veth
// to a "host" namespace running dnsmasq. The test talks to the container's
// system bus through /proc/PID/root/run/dbus/system_bus_socket.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
)

const (
	rootSuite   = "bookworm"
	rootInclude = "systemd-sysv,dbus,iproute2,libpam-systemd"
	rootExtra   = "network-manager"
	guestMAC    = "52:54:00:4e:4d:01"
)

// mirror is PREWARM_DEBIAN_MIRROR, else the URI this machine's apt uses
// for the suite, else deb.debian.org.
func mirror() string {
	if m := os.Getenv("PREWARM_DEBIAN_MIRROR"); m != "" {
		return m
	}
	srcs, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range srcs {
		b, _ := os.ReadFile(f)
		for _, stanza := range regexp.MustCompile(`\n[ \t]*\n`).Split(string(b), -1) {
			var uri string
			var ok bool
			for _, l := range strings.Split(stanza, "\n") {
				fs := strings.Fields(l)
				if len(fs) >= 2 && strings.EqualFold(fs[0], "URIs:") {
					uri = fs[1]
				}
				if len(fs) >= 2 && strings.EqualFold(fs[0], "Suites:") && slices.Contains(fs[1:], rootSuite) {
					ok = true
				}
			}
			if ok && uri != "" {
				return uri
			}
		}
	}
	return "http://deb.debian.org/debian"
}

func run(t testing.TB, timeout time.Duration, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, lastLines(string(out), 30))
	}
	return string(out)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// testRoot unpacks the cached root into a fresh directory (removed when
// the test ends), making and caching it first if needed.
func testRoot(t *testing.T) string {
	m := mirror()
	sum := sha256.Sum256([]byte(strings.Join([]string{rootSuite, m, rootInclude, rootExtra, "minbase"}, " ")))
	cache, set := os.LookupEnv("PREWARM_CI_CACHE")
	if !set {
		cache = "/var/cache/prewarm-ci"
	}
	work, err := os.MkdirTemp("/var/tmp", "pwnm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(work); err != nil {
			t.Errorf("remove %s: %v", work, err)
		}
	})
	root := filepath.Join(work, "root")
	tarball := ""
	if cache != "" {
		tarball = filepath.Join(cache, "netmgr-root-"+rootSuite+"-"+hex.EncodeToString(sum[:])[:12]+".tar.zst")
		if _, err := os.Stat(tarball); err == nil {
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, 5*time.Minute, "tar", "--zstd", "-xpf", tarball, "-C", root, "--numeric-owner")
			return root
		}
	}
	t.Logf("debootstrap %s from %s (+%s, then %s)", rootSuite, m, rootInclude, rootExtra)
	run(t, 10*time.Minute, "debootstrap", "--variant=minbase", "--include="+rootInclude, rootSuite, root, m)
	// NetworkManager after the fact: debootstrap does not resolve its
	// virtual dependencies (polkitd's logind).
	run(t, 10*time.Minute, "chroot", root, "/usr/bin/env", "DEBIAN_FRONTEND=noninteractive",
		"apt-get", "install", "-y", "--no-install-recommends", rootExtra)
	run(t, time.Minute, "chroot", root, "apt-get", "clean")
	if tarball != "" {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := fmt.Sprintf("%s.tmp.%d", tarball, os.Getpid())
		run(t, 10*time.Minute, "tar", "--zstd", "-cpf", tmp, "-C", root, "--numeric-owner", ".")
		if err := os.Rename(tmp, tarball); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// lab is one boot of the root: its namespaces, dnsmasq and container.
type lab struct {
	t       *testing.T
	dir     string
	host    *netlab.Netns
	dnsmasq *netlab.Dnsmasq
	nspawn  *netlab.Proc
	cpid    int // the container's systemd, as the host sees it
}

// boot starts dnsmasq (reserving first for the guest's MAC) and boots
// root with the extra nspawn and systemd arguments, and returns once the
// container's systemd says the system is up.
func boot(t *testing.T, root, first string, nspawnArgs, systemdArgs []string) *lab {
	l := &lab{t: t, dir: t.TempDir()}
	l.host = netlab.NewNetns(t, netlab.Unique("nmh"))
	guest := netlab.NewNetns(t, netlab.Unique("nmg"))
	netlab.Veth(t, l.host, "vh0", guest, "eth0", guestMAC)
	l.host.IP(t, "addr", "add", "10.77.0.1/24", "dev", "vh0")
	l.host.IP(t, "link", "set", "vh0", "up")
	l.dnsmasq = netlab.StartDnsmasq(t, l.host, netlab.DnsmasqConfig{
		Dir: l.dir, Interfaces: []string{"vh0"},
		Ranges: []string{"10.77.0.0,static,255.255.255.0,2m"},
		Hosts:  []netlab.Host{{MAC: guestMAC, Addr: first}},
	})
	argv := []string{"systemd-nspawn", "-D", root, "-M", netlab.Unique("pwnm"), "--boot",
		"--register=no", "--keep-unit", "--console=pipe", "--link-journal=no", "--volatile=overlay",
		"--network-namespace-path=" + guest.Path(), "--capability=CAP_NET_ADMIN",
		"--resolv-conf=off", "--timezone=off"}
	argv = append(append(argv, nspawnArgs...), systemdArgs...)
	p, err := netlab.StartProc(t, l.dir, "nspawn", false, argv...)
	if err != nil {
		t.Fatal(err)
	}
	l.nspawn = p
	// Runs before StartProc's own stop: a clean poweroff first.
	t.Cleanup(func() {
		if done, _ := p.Exited(); done || l.cpid == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(l.cpid), "-a", "systemctl", "poweroff", "--no-block").Run()
		cancel()
		p.Wait(30 * time.Second)
	})
	l.findPID()
	for i := 0; ; i++ {
		if _, err := l.inside("test", "-S", "/run/dbus/system_bus_socket"); err == nil {
			break
		}
		if done, _ := p.Exited(); done || i == 400 {
			t.Fatalf("no system bus in the container (nspawn exited: %v)", done)
		}
		time.Sleep(25 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(l.cpid), "-a", "systemctl", "is-system-running", "--wait").Output()
	t.Logf("container booted (systemd PID %d on the host): %s", l.cpid, strings.TrimSpace(string(out)))
	return l
}

// findPID finds the host PID of the container's PID 1.
func (l *lab) findPID() {
	pid, err := netlab.ContainerPID1(l.nspawn, 5*time.Second, 25*time.Millisecond)
	if err != nil {
		l.t.Fatal(err)
	}
	l.cpid = pid
}

// inside runs argv in all of the container's namespaces.
func (l *lab) inside(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(l.cpid), "-a"}, argv...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// busAddress is the container's system bus, reached from the host.
func (l *lab) busAddress() string {
	return fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", l.cpid)
}

// eth0 is the container's IPv4 prefixes on eth0.
func (l *lab) eth0() []string {
	out, _ := l.inside("ip", "-4", "-o", "addr", "show", "dev", "eth0")
	return netlab.ParseAddrs(out)
}

// leaseName is the client host name dnsmasq's lease file has for the
// guest's MAC ("*" for none).
func (l *lab) leaseName() string {
	b, _ := os.ReadFile(filepath.Join(l.dir, "dnsmasq.leases"))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == guestMAC {
			return f[3]
		}
	}
	return ""
}

// reserve moves the guest's reservation to addr.
func (l *lab) reserve(addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.dnsmasq.SetHosts(ctx, netlab.Host{MAC: guestMAC, Addr: addr}); err != nil {
		l.t.Fatal(err)
	}
}

// acks counts dnsmasq's DHCPACKs.
func (l *lab) acks() int {
	n := 0
	for _, line := range l.dnsmasq.Log.Lines() {
		if strings.Contains(line, "DHCPACK(vh0)") {
			n++
		}
	}
	return n
}
