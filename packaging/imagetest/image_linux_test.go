package imagetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
)

const (
	suite    = "bookworm"
	include  = "systemd-sysv,dbus,iproute2,ifupdown,isc-dhcp-client,sudo,tzdata"
	instance = "pool-vm-1"
	aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHCoy0/iT5AeF0TYXTGlxg17bmLM86aghaDYZ7w1bmIK alice@prewarm-ci"
)

// TestGoldenImage proves that a golden image with the prewarm-agent .deb
// baked in provisions itself.
//
// It builds the packages (make package), makes a minimal Debian root with
// debootstrap (cached as a tarball under /var/cache/prewarm-ci), installs
// the fresh .deb into it the way an image builder does (dpkg -i in a
// chroot), and boots it with systemd as PID 1 (systemd-nspawn --boot) in a
// network namespace whose veth leads to a "host" namespace running
// prewarm-imds (from the fresh prewarm-imds .deb) and dnsmasq. Then it
// shows, awaiting each report on the IMDS admin socket (prewarm-imds status
// --wait), never with sleeps:
//
//  1. the unit was enabled by the package and started by itself;
//  2. it reports partial-ready for the placeholder config published before
//     boot, with that config's host name applied;
//  3. a host-side link bounce makes it renew DHCP (event dhcp-renewed);
//  4. it reports provisioned for the final config, and the host name, time
//     zone and a user (groups, sudo rule, SSH key, hashed password) are in
//     the image, the plaintext password in no log, report or state file;
//  5. reinstalling the .deb in the running container (the upgrade path)
//     restarts the agent once, keeps its state and the DHCP client, and
//     re-reports nothing;
//  6. after a reboot of the container (poweroff, boot the same root again)
//     it starts, keeps its state and reports neither partial-ready nor
//     provisioned again for the same generations;
//  7. purging the package stops the agent and removes its state and logs;
//  8. the prewarm-imds package, installed in the running container, starts
//     its sandboxed unit with the admin socket in group prewarm-admin.
//
// It also installs and purges the prewarm-imds .deb in a copy of the root
// (sysusers, enable, purge) and checks both units with systemd-analyze
// verify.
//
// It touches the network only inside the namespaces it creates
// (pwp-<pid>-h, pwp-<pid>-g) and removes them, its processes and its files
// when it ends.
//
// Environment:
//
//	PREWARM_IMAGE_TEST=1     run it (packaging/test-image.sh sets it)
//	PREWARM_SKIP_BUILD=1     use the packages already in dist/
//	PREWARM_CI_CACHE=DIR     where the debootstrap tarball is kept
//	                         (default /var/cache/prewarm-ci; "" for no cache)
//	PREWARM_DEBIAN_MIRROR=U  Debian mirror (default: from /etc/apt/sources.list*)
//	KEEP=1                   keep the work directory (logs, root) at the end
func TestGoldenImage(t *testing.T) {
	if os.Getenv("PREWARM_IMAGE_TEST") != "1" {
		t.Skip("the golden-image proof runs with `make package-test` (bash packaging/test-image.sh), as root")
	}
	netlab.RequireRoot(t, "debootstrap", "systemd-nspawn", "dnsmasq", "zstd", "nsenter", "make")
	m := &image{t: t, t0: time.Now(), id: fmt.Sprintf("pwp-%d", os.Getpid())}
	m.setUp()

	// 1+2: boot, partial-ready
	m.boot("boot1")
	if got := m.inside("systemctl", "is-enabled", "prewarm-agent.service"); got != "enabled" {
		m.fail("prewarm-agent.service is not enabled")
	}
	m.waitReport("partial-ready for generation 1", func(r report) bool { return r.State == "partial-ready" && r.Generation == 1 }, 90*time.Second)
	if st := m.unitProp("ActiveState") + "/" + m.unitProp("SubState"); st != "active/running" {
		m.fail("prewarm-agent.service is %s", st)
	}
	if n := m.unitProp("NRestarts"); n != "0" {
		m.fail("prewarm-agent.service restarted %s times", n)
	}
	if h := m.inside("hostname"); h != "pool-standby" {
		m.fail("placeholder host name not applied: %s", h)
	}
	m.waitStatusText("prewarm-agent.service", "waiting for final config (partial, generation 1)")
	m.say("OK: the unit started by itself (active/running, Type=%s, 0 restarts) and reported partial-ready; host name pool-standby; systemd's status: %q", m.unitProp("Type"), m.unitProp("StatusText"))

	// 3: link bounce
	leaseBefore := m.eth0()
	dhclientBefore := m.inContainer("dhclient")
	acksBefore := m.acks()
	if len(dhclientBefore) == 0 {
		m.fail("the image's dhclient (ifupdown) is not running")
	}
	m.host.IP(t, "link", "set", "vh0", "down")
	m.host.IP(t, "link", "set", "vh0", "up")
	m.waitReport("dhcp-renewed after the link bounce", func(r report) bool { return r.Event == "dhcp-renewed" }, 60*time.Second)
	leaseAfter := m.eth0()
	dhclientAfter := m.inContainer("dhclient")
	acksAfter := m.acks()
	if leaseAfter == "" {
		m.fail("eth0 has no address after the renewal")
	}
	if acksAfter <= acksBefore {
		m.fail("dnsmasq sent no DHCPACK for the renewal")
	}
	// Renewed through the image's client: dhclient has no renew signal, so
	// the agent restarts it (a new PID), and no built-in client ran beside it.
	if len(dhclientAfter) == 0 || slices.Equal(dhclientAfter, dhclientBefore) {
		m.fail("the renewal did not go through the image's dhclient (PIDs %v -> %v)", dhclientBefore, dhclientAfter)
	}
	m.say("OK: host-side link bounce -> dhcp-renewed through the image's dhclient (PID %v -> %v, eth0 %s -> %s, DHCPACK from dnsmasq)", dhclientBefore, dhclientAfter, leaseBefore, leaseAfter)

	// 4: final config
	alicePW := fmt.Sprintf("pw-%d%d-prewarm-ci", rand.IntN(32768), rand.IntN(32768))
	doc, _ := json.Marshal(map[string]any{
		"hostname": "web-01", "timezone": "Europe/Berlin",
		"users": []map[string]any{{"name": "alice", "groups": []string{"sudo"}, "sudo": "nopasswd", "shell": "/bin/bash",
			"sshAuthorizedKeys": []string{aliceKey}, "password": alicePW}},
	})
	m.adm(string(doc), "publish", instance, "-")
	m.waitReport("provisioned for generation 2", func(r report) bool { return r.State == "provisioned" && r.Generation == 2 }, 90*time.Second)
	if h := m.inside("hostname"); h != "web-01" {
		m.fail("kernel host name is %s, want web-01", h)
	}
	if h := m.inside("cat", "/etc/hostname"); h != "web-01" {
		m.fail("/etc/hostname is %s", h)
	}
	if !strings.HasSuffix(m.inside("getent", "passwd", "alice"), ":/bin/bash") {
		m.fail("user alice missing or without /bin/bash")
	}
	if !slices.Contains(strings.Fields(m.inside("id", "-nG", "alice")), "sudo") {
		m.fail("alice is not in group sudo")
	}
	if !strings.Contains(m.inside("cat", "/home/alice/.ssh/authorized_keys"), aliceKey) {
		m.fail("alice's SSH key missing")
	}
	if !strings.Contains(m.inside("sudo", "-l", "-U", "alice"), "NOPASSWD") {
		m.fail("alice has no NOPASSWD sudo rule")
	}
	if !strings.HasSuffix(m.inside("readlink", "/etc/localtime"), "/Europe/Berlin") {
		m.fail("time zone not applied")
	}
	if f := strings.Split(m.inside("getent", "shadow", "alice"), ":"); len(f) < 2 || !strings.HasPrefix(f[1], "$6$") {
		m.fail("alice has no SHA-512 crypt password")
	}
	// The plaintext password is nowhere the tenant or an admin can read it.
	for _, f := range []string{"/var/log/prewarm", "/run/prewarm", "/var/lib/prewarm"} {
		if _, err := m.insideErr("grep", "-rqF", "--", alicePW, f); err == nil {
			m.fail("the plaintext password is in %s", f)
		}
	}
	if strings.Contains(m.inside("journalctl", "-b", "--no-pager", "-o", "cat"), alicePW) {
		m.fail("the plaintext password is in the journal")
	}
	if b, _ := os.ReadFile(filepath.Join(m.work, "reports.jsonl")); bytes.Contains(b, []byte(alicePW)) {
		m.fail("the plaintext password is in a status report")
	}
	m.waitStatusText("prewarm-agent.service", "provisioned generation 2")
	m.say("OK: provisioned; inside the image: hostname web-01, user alice (bash, sudo NOPASSWD, SSH key, hashed password), zone Europe/Berlin; the password in no log, report or state file; systemd's status: %q", m.unitProp("StatusText"))
	for _, l := range strings.Split(m.inside("prewarm-agent", "status"), "\n") {
		m.t.Logf("    prewarm-agent status: %s", l)
	}

	// 5: upgrade
	prBefore, pvBefore := m.count("partial-ready"), m.count("provisioned")
	seqBefore, startsBefore := m.after, m.starts()
	dhclientBefore = m.inContainer("dhclient")
	if len(dhclientBefore) == 0 {
		m.fail("the image's dhclient is not running before the upgrade")
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", dhclientBefore[0]))
	if !strings.Contains(string(cg), "prewarm-agent.service") {
		m.fail("dhclient is not in the agent's cgroup: %s", cg)
	}
	m.copyFile(m.agentDeb, filepath.Join(m.root, "var/cache/prewarm-agent.deb"))
	m.insideLog("upgrade.log", "dpkg", "-i", "/var/cache/prewarm-agent.deb")
	os.Remove(filepath.Join(m.root, "var/cache/prewarm-agent.deb"))
	m.noRereport(seqBefore, "the package upgrade")
	if n := m.starts(); n != startsBefore+1 {
		m.fail("the upgrade started the agent %d times, want 1", n-startsBefore)
	}
	if now := m.inContainer("dhclient"); !slices.Equal(now, dhclientBefore) {
		m.fail("the agent's restart took the DHCP client along (PIDs %v -> %v)", dhclientBefore, now)
	}
	m.say("OK: package upgrade in the running image: agent restarted once, state kept, nothing re-reported; the dhclient it started (in its cgroup) kept running")

	// 6: reboot
	seqBefore = m.after
	m.poweroff()
	m.say("container powered off; booting the same root again")
	m.boot("boot2")
	m.noRereport(seqBefore, "the reboot")
	if m.count("partial-ready") != prBefore || m.count("provisioned") != pvBefore {
		m.fail("the status log grew partial-ready/provisioned lines after the upgrade and reboot")
	}
	if h := m.inside("hostname"); h != "web-01" {
		m.fail("host name after the reboot is %s", h)
	}
	if _, err := m.insideErr("getent", "passwd", "alice"); err != nil {
		m.fail("alice is gone after the reboot")
	}
	m.say("OK: after the reboot the agent started with its state (seq %d -> %d) and reported no partial-ready/provisioned again", seqBefore, m.after)

	// 7: purge
	m.insideLog("purge.log", "dpkg", "--purge", "prewarm-agent")
	if m.unitProp("ActiveState") == "active" {
		m.fail("prewarm-agent.service still active after the purge")
	}
	for _, f := range []string{"/var/lib/prewarm", "/var/log/prewarm", "/etc/systemd/system/multi-user.target.wants/prewarm-agent.service", "/usr/bin/prewarm-agent"} {
		if _, err := m.insideErr("test", "!", "-e", f); err != nil {
			m.fail("%s is left after the purge", f)
		}
	}
	m.say("OK: purge stopped the agent and removed its unit link, binary, state and status log")

	// 8: the IMDS unit. The IMDS package under a running systemd: postinst
	// starts the sandboxed unit as prewarm-imds with the admin socket in
	// group prewarm-admin. Its guest API goes to loopback here (no
	// 169.254.169.254 in this namespace).
	m.write(filepath.Join(m.root, "etc/default/prewarm-imds"), "PREWARM_IMDS_OPTS=\"--listen=127.0.0.1:8169\"\n", 0o644)
	m.copyFile(m.imdsDeb, filepath.Join(m.root, "var/cache/prewarm-imds.deb"))
	m.insideLog("imds-unit.log", "dpkg", "-i", "--force-confold", "/var/cache/prewarm-imds.deb")
	os.Remove(filepath.Join(m.root, "var/cache/prewarm-imds.deb"))
	if st := m.inside("systemctl", "show", "-p", "ActiveState", "--value", "prewarm-imds.service"); st != "active" {
		out, _ := m.insideErr("systemctl", "status", "--no-pager", "prewarm-imds.service")
		m.fail("prewarm-imds.service is not active: %s", lastLines(out, 5))
	}
	for i := 0; i < 100; i++ {
		if _, err := m.insideErr("test", "-S", "/run/prewarm/imds-admin.sock"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := m.inside("stat", "-c", "%U:%G %a", "/run/prewarm/imds-admin.sock"); got != "prewarm-imds:prewarm-admin 660" {
		m.fail("admin socket is %s, want prewarm-imds:prewarm-admin 660", got)
	}
	if _, err := m.insideErr("prewarm-imds", "list"); err != nil {
		m.fail("prewarm-imds list over the admin socket failed: %v", err)
	}
	if typ := m.inside("systemctl", "show", "-p", "Type", "--value", "prewarm-imds.service"); typ != "notify" {
		m.fail("prewarm-imds.service is Type=%s, want notify", typ)
	}
	m.waitStatusText("prewarm-imds.service", "0 instances, 0 parked polls")
	m.say("OK: prewarm-imds.service runs sandboxed as prewarm-imds (Type=notify, status %q); admin socket prewarm-imds:prewarm-admin 0660 answers", "0 instances, 0 parked polls")

	m.poweroff()
	m.say("PASS: the golden image provisioned itself (%d s)", int(time.Since(m.t0).Seconds()))
}

// image is the state of one run.
type image struct {
	t    *testing.T
	t0   time.Time
	id   string // pwp-<pid>: the namespaces' prefix and the machine name
	repo string
	work string // everything on disk: the root, logs, the IMDS's data
	root string

	agentDeb, imdsDeb string

	host, guest *netlab.Netns
	dnsmasq     *netlab.Dnsmasq
	imds        string // the prewarm-imds binary from the .deb
	sock        string // its admin socket

	after   uint64   // the highest report seq seen
	reports []report // every report seen, in order

	nspawn *netlab.Proc
	cpid   int // the container's PID 1 (systemd) on the host
}

// report is what this test reads of a status report.
type report struct {
	Seq        uint64 `json:"seq"`
	Generation int64  `json:"generation"`
	State      string `json:"state"`
	Event      string `json:"event"`
	Error      string `json:"error"`
}

func (m *image) say(format string, args ...any) {
	m.t.Helper()
	d := time.Since(m.t0)
	m.t.Logf("[%6.1fs] %s", d.Seconds(), fmt.Sprintf(format, args...))
}

func (m *image) fail(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("FAIL: "+format, args...)
}

// run runs argv bounded by timeout, its combined output to work/log
// (appended) if log is not "", and fails the test on error.
func (m *image) run(timeout time.Duration, log string, argv ...string) string {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if log != "" {
		f, ferr := os.OpenFile(filepath.Join(m.work, log), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if ferr == nil {
			f.Write(out.Bytes())
			f.Close()
		}
	}
	if err != nil {
		where := strings.TrimSpace(out.String())
		if log != "" {
			where = "see " + filepath.Join(m.work, log)
		}
		m.fail("%s: %v (%s)", strings.Join(argv, " "), err, where)
	}
	return out.String()
}

func (m *image) write(path, data string, perm os.FileMode) {
	m.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		m.t.Fatal(err)
	}
}

func (m *image) copyFile(src, dst string) {
	m.t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		m.t.Fatal(err)
	}
	m.write(dst, string(b), 0o644)
}

// setUp makes the work directory, the packages, the image and the host
// side: everything before the first boot.
func (m *image) setUp() {
	t := m.t
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	m.repo = filepath.Dir(filepath.Dir(wd)) // packaging/imagetest
	if m.work, err = os.MkdirTemp("/var/tmp", m.id+"."); err != nil {
		t.Fatal(err)
	}
	m.root = filepath.Join(m.work, "root")
	// Registered first, so it runs last: after the container, the
	// processes and the namespaces are gone.
	t.Cleanup(m.removeWork)

	// packages
	if os.Getenv("PREWARM_SKIP_BUILD") != "1" {
		m.say("building the packages (make package)")
		out := m.run(20*time.Minute, "build.log", "make", "-C", m.repo, "--no-print-directory", "package")
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "created package") || strings.HasPrefix(l, "lintian") {
				t.Logf("    %s", l)
			}
		}
	}
	m.agentDeb = newest(filepath.Join(m.repo, "dist", "prewarm-agent_*.deb"))
	m.imdsDeb = newest(filepath.Join(m.repo, "dist", "prewarm-imds_*.deb"))
	if m.agentDeb == "" || m.imdsDeb == "" {
		m.fail("no .deb in %s/dist", m.repo)
	}
	m.say("packages: %s %s", filepath.Base(m.agentDeb), filepath.Base(m.imdsDeb))

	m.makeRoot()
	m.imdsCheck()
	m.bake()
	m.hostSide()
}

// removeWork unmounts what is left below the work directory (nothing,
// once nspawn is gone; be sure before deleting), shows the logs of a
// failed run and removes it unless KEEP=1.
func (m *image) removeWork() {
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		var ms []string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], m.work) {
				ms = append(ms, f[1])
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(ms)))
		for _, mp := range ms {
			exec.Command("umount", "-l", mp).Run()
		}
	}
	if m.t.Failed() {
		logs, _ := filepath.Glob(filepath.Join(m.work, "*.log"))
		for _, f := range logs {
			if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
				m.t.Logf("----- last lines of %s\n%s", f, lastLines(string(b), 40))
			}
		}
	}
	if os.Getenv("KEEP") == "1" {
		m.t.Logf("kept %s", m.work)
		return
	}
	if err := os.RemoveAll(m.work); err != nil {
		m.t.Errorf("remove %s: %v", m.work, err)
	}
}

// newest is the most recently modified file matching pattern ("" if none).
func newest(pattern string) string {
	fs, _ := filepath.Glob(pattern)
	best, bestT := "", time.Time{}
	for _, f := range fs {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(bestT) {
			best, bestT = f, st.ModTime()
		}
	}
	return best
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// debianMirror is the Debian mirror this machine's apt uses for suite
// (deb822 .sources or one-line .list), else deb.debian.org.
func debianMirror() string {
	srcs, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range srcs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// Stanzas are separated by blank lines.
		for _, stanza := range regexp.MustCompile(`\n[ \t]*\n`).Split(string(b), -1) {
			var uri string
			var deb, ok bool
			for _, l := range strings.Split(stanza, "\n") {
				f := strings.Fields(l)
				if len(f) < 2 {
					continue
				}
				switch strings.ToLower(f[0]) {
				case "types:":
					deb = deb || slices.Contains(f[1:], "deb")
				case "uris:":
					uri = f[1]
				case "suites:":
					ok = ok || slices.Contains(f[1:], suite)
				}
			}
			if ok && deb && uri != "" {
				return uri
			}
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, lists...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			l = regexp.MustCompile(`\[[^]]*\][ \t]*`).ReplaceAllString(l, "")
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "deb" && f[2] == suite {
				return f[1]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// makeRoot unpacks the cached debootstrap root, or makes (and caches) it.
func (m *image) makeRoot() {
	mirror := os.Getenv("PREWARM_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = debianMirror()
	}
	cache, set := os.LookupEnv("PREWARM_CI_CACHE")
	if !set {
		cache = "/var/cache/prewarm-ci"
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s %s %s minbase", suite, mirror, include)))
	tarball := ""
	if cache != "" {
		tarball = filepath.Join(cache, "root-"+suite+"-"+hex.EncodeToString(sum[:])[:12]+".tar.zst")
	}
	if err := os.MkdirAll(m.root, 0o755); err != nil {
		m.t.Fatal(err)
	}
	if _, err := os.Stat(tarball); tarball != "" && err == nil {
		m.say("unpacking the cached root %s", tarball)
		m.run(5*time.Minute, "", "tar", "--zstd", "-xpf", tarball, "-C", m.root, "--numeric-owner")
		return
	}
	m.say("debootstrap %s from %s (variant minbase, +%s)", suite, mirror, include)
	m.run(10*time.Minute, "debootstrap.log", "debootstrap", "--variant=minbase", "--include="+include, suite, m.root, mirror)
	if tarball != "" {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			m.t.Fatal(err)
		}
		tmp := fmt.Sprintf("%s.tmp.%d", tarball, os.Getpid())
		m.run(10*time.Minute, "", "tar", "--zstd", "-cpf", tmp, "-C", m.root, "--numeric-owner", ".")
		if err := os.Rename(tmp, tarball); err != nil {
			m.t.Fatal(err)
		}
		st, _ := os.Stat(tarball)
		m.say("cached the root as %s (%d MB)", tarball, st.Size()>>20)
	}
}

// imdsCheck: the prewarm-imds package's maintainer scripts and unit, in a
// throwaway copy of the root: install creates the user and group and
// enables the unit; purge removes the unit's links and the store.
func (m *image) imdsCheck() {
	r := filepath.Join(m.work, "imds-root")
	m.run(5*time.Minute, "", "cp", "-a", m.root, r)
	deb := filepath.Base(m.imdsDeb)
	m.copyFile(m.imdsDeb, filepath.Join(r, "tmp", deb))
	m.run(5*time.Minute, "imds-dpkg.log", "chroot", r, "dpkg", "-i", "/tmp/"+deb)
	if err := exec.Command("chroot", r, "getent", "group", "prewarm-admin").Run(); err != nil {
		m.fail("prewarm-imds: no prewarm-admin group")
	}
	if err := exec.Command("chroot", r, "getent", "passwd", "prewarm-imds").Run(); err != nil {
		m.fail("prewarm-imds: no prewarm-imds user")
	}
	link := filepath.Join(r, "etc/systemd/system/multi-user.target.wants/prewarm-imds.service")
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		m.fail("prewarm-imds: not enabled")
	}
	m.run(time.Minute, "", "chroot", r, "systemd-analyze", "verify", "--man=no", "prewarm-imds.service")
	if err := os.MkdirAll(filepath.Join(r, "var/lib/prewarm-imds"), 0o755); err != nil {
		m.t.Fatal(err)
	}
	m.run(5*time.Minute, "imds-dpkg.log", "chroot", r, "dpkg", "--purge", "prewarm-imds")
	_, errLink := os.Lstat(link)
	_, errStore := os.Lstat(filepath.Join(r, "var/lib/prewarm-imds"))
	if errLink == nil || errStore == nil {
		m.fail("prewarm-imds: purge left the unit link or the store")
	}
	if err := os.RemoveAll(r); err != nil {
		m.t.Fatal(err)
	}
	m.say("prewarm-imds .deb: user+group created, unit enabled and verified, purged cleanly")
}

// bake installs the agent's .deb: what packaging/README.md tells image
// builders to do.
func (m *image) bake() {
	deb := filepath.Base(m.agentDeb)
	m.say("baking the image: dpkg -i %s in a chroot", deb)
	m.copyFile(m.agentDeb, filepath.Join(m.root, "tmp", deb))
	m.run(5*time.Minute, "dpkg.log", "chroot", m.root, "dpkg", "-i", "/tmp/"+deb)
	os.Remove(filepath.Join(m.root, "tmp", deb))
	if st, err := os.Lstat(filepath.Join(m.root, "etc/systemd/system/multi-user.target.wants/prewarm-agent.service")); err != nil || st.Mode()&os.ModeSymlink == 0 {
		m.fail("the package did not enable prewarm-agent.service")
	}
	m.run(time.Minute, "", "chroot", m.root, "systemd-analyze", "verify", "--man=no", "prewarm-agent.service")
	m.write(filepath.Join(m.root, "etc/hostname"), "golden\n", 0o644)
	m.write(filepath.Join(m.root, "etc/hosts"), "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n", 0o644)
	m.write(filepath.Join(m.root, "etc/machine-id"), "", 0o644) // every clone gets its own on first boot
	m.write(filepath.Join(m.root, "etc/resolv.conf"), "", 0o644)
	m.write(filepath.Join(m.root, "etc/network/interfaces.d/eth0"), "auto eth0\niface eth0 inet dhcp\n", 0o644)
	m.say("image ready: prewarm-agent.service enabled and verified")
}

// hostSide makes the namespaces and the veth pair, starts dnsmasq and
// prewarm-imds (from the fresh .deb) in the host one, registers the
// instance by its host interface and publishes the placeholder.
func (m *image) hostSide() {
	t := m.t
	net := fmt.Sprintf("10.213.%d", os.Getpid()%250+1)
	m.host = netlab.NewNetns(t, m.id+"-h")
	m.guest = netlab.NewNetns(t, m.id+"-g")
	netlab.Veth(t, m.host, "vh0", m.guest, "eth0", "")
	m.host.IP(t, "addr", "add", net+".1/24", "dev", "vh0")
	m.host.IP(t, "addr", "add", "169.254.169.254/32", "dev", "vh0")
	m.host.IP(t, "link", "set", "vh0", "up")
	m.host.IP(t, "route", "add", "unreachable", net+".0/24", "metric", "4000")
	m.dnsmasq = netlab.StartDnsmasq(t, m.host, netlab.DnsmasqConfig{
		Dir:        m.work,
		Interfaces: []string{"vh0"},
		Ranges:     []string{net + ".50," + net + ".150,2m"},
	})

	// The IMDS from the fresh .deb. It binds a listener to vh0 once the
	// instance is registered with that hostInterface, and knows the guest
	// by it.
	m.run(time.Minute, "", "dpkg-deb", "-x", m.imdsDeb, filepath.Join(m.work, "imds-pkg"))
	m.imds = filepath.Join(m.work, "imds-pkg/usr/bin/prewarm-imds")
	m.sock = filepath.Join(m.work, "imds-admin.sock")
	p, err := netlab.StartProc(t, m.work, "imds", false, "nsenter", "--net="+m.host.Path(), "--",
		m.imds, "serve", "--listen", "169.254.169.254:80", "--admin-socket", m.sock, "--data-dir", filepath.Join(m.work, "imds-data"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := exec.Command(m.imds, "list", "--admin-socket", m.sock).Run(); err == nil {
			break
		}
		if done, _ := p.Exited(); done {
			m.fail("prewarm-imds exited (see imds.log)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := exec.Command(m.imds, "list", "--admin-socket", m.sock).Run(); err != nil {
		m.fail("prewarm-imds admin socket did not come up")
	}
	m.adm("", "register", instance, "--host-interface", "vh0")
	m.adm(`{"partial": true, "hostname": "pool-standby"}`, "publish", instance, "-")
	m.say("host: dnsmasq and prewarm-imds in %s; %s registered on vh0, placeholder (partial) published", m.host.Name, instance)
}

// adm runs a prewarm-imds admin command with stdin, failing on error.
func (m *image) adm(stdin string, args ...string) string {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.imds, append(args, "--admin-socket", m.sock)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		m.fail("prewarm-imds %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// status awaits reports after m.after for up to wait and records them: in
// m.reports, in work/reports.jsonl and in the test log.
func (m *image) status(wait, bound time.Duration) ([]report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	out, err := exec.CommandContext(ctx, m.imds, "status", instance, "--admin-socket", m.sock,
		"--wait", "--until", "any", "--after", strconv.FormatUint(m.after, 10), "--timeout", fmt.Sprintf("%ds", int(wait.Seconds())), "--output", "json").Output()
	// Exit 3 is a failed report, printed like any other (docs/cli.md).
	if ee := (*exec.ExitError)(nil); err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) {
		return nil, err
	}
	var page struct{ Reports []json.RawMessage }
	if err := json.Unmarshal(out, &page); err != nil {
		return nil, fmt.Errorf("prewarm-imds status: %w: %s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(m.work, "reports.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []report
	for _, raw := range page.Reports {
		var c bytes.Buffer
		json.Compact(&c, raw)
		fmt.Fprintf(f, "%s\n", c.Bytes())
		var r report
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("a report: %w: %s", err, raw)
		}
		line := fmt.Sprintf("    report seq=%d gen=%d state=%s", r.Seq, r.Generation, r.State)
		if r.Event != "" {
			line += " event=" + r.Event
		}
		if r.Error != "" {
			line += " error=" + r.Error
		}
		m.t.Log(line)
		m.after = max(m.after, r.Seq)
		rs = append(rs, r)
	}
	m.reports = append(m.reports, rs...)
	return rs, nil
}

// waitReport awaits a report matching sel, reading them as they arrive; a
// failed report fails the test at once.
func (m *image) waitReport(desc string, sel func(report) bool, limit time.Duration) {
	m.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		left := time.Until(deadline).Truncate(time.Second)
		rs, err := m.status(left, left+15*time.Second)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // the IMDS restarting; bounded by the deadline
			continue
		}
		for _, r := range rs {
			if r.State == "failed" {
				m.fail("the agent reported failed while awaiting %s", desc)
			}
		}
		if slices.ContainsFunc(rs, sel) {
			return
		}
	}
	m.fail("no report %s within %v", desc, limit)
}

// noRereport awaits the agent's "starting" report after seq, then
// everything it says in its first seconds; none of it may be another
// partial-ready or provisioned (the generations are applied already).
func (m *image) noRereport(seq uint64, what string) {
	m.t.Helper()
	m.waitReport("starting after "+what, func(r report) bool { return r.State == "starting" }, 60*time.Second)
	for i := 0; i < 100 && m.unitProp("ActiveState") != "active"; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if st := m.unitProp("ActiveState"); st != "active" {
		m.fail("prewarm-agent.service is %s after %s", st, what)
	}
	m.status(3*time.Second, 20*time.Second)
	again := 0
	for _, r := range m.reports {
		if r.Seq > seq && (r.State == "partial-ready" || r.State == "provisioned") {
			again++
		}
	}
	if again != 0 {
		m.fail("after %s the agent reported partial-ready/provisioned again (%d times)", what, again)
	}
}

// count is the number of lines of the agent's status log with state.
func (m *image) count(state string) int {
	b, _ := os.ReadFile(filepath.Join(m.root, "var/log/prewarm/status.jsonl"))
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r report
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.State == state {
			n++
		}
	}
	return n
}

// starts is how often systemd started the agent in this boot.
func (m *image) starts() int {
	n := 0
	for _, l := range strings.Split(m.inside("journalctl", "-b", "-u", "prewarm-agent.service", "-o", "cat", "--no-pager"), "\n") {
		if strings.HasPrefix(l, "Started prewarm-agent") {
			n++
		}
	}
	return n
}

// boot boots the root with systemd as PID 1, its console in work/LOG.log.
// The flags are those of shared/HARNESS.md (PID 1 here is not systemd)
// without --volatile, so the state persists across boots, plus
// CAP_NET_ADMIN: nspawn keeps it only for networks it made itself, and the
// image's DHCP client and the agent need it in the namespace given with
// --network-namespace-path.
func (m *image) boot(log string) {
	t := m.t
	p, err := netlab.StartProc(t, m.work, log, false, "systemd-nspawn", "-D", m.root, "-M", m.id, "--boot",
		"--register=no", "--keep-unit", "--console=pipe", "--link-journal=no",
		"--network-namespace-path="+m.guest.Path(), "--capability=CAP_NET_ADMIN", "--resolv-conf=off", "--timezone=off")
	if err != nil {
		t.Fatal(err)
	}
	m.nspawn = p
	// Runs before StartProc's own stop: a clean poweroff first.
	t.Cleanup(func() {
		if done, _ := p.Exited(); done {
			return
		}
		if m.cpid != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(m.cpid), "-a", "systemctl", "poweroff", "--no-block").Run()
			cancel()
		}
		p.Wait(30 * time.Second)
	})
	m.containerPID()
	for i := 0; i < 200; i++ {
		if _, err := m.insideErr("test", "-S", "/run/systemd/private"); err == nil {
			break
		}
		if done, _ := p.Exited(); done {
			m.fail("systemd-nspawn exited (see %s.log)", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	out, _ := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(m.cpid), "-a", "systemctl", "is-system-running", "--wait").Output()
	cancel()
	st := strings.TrimSpace(string(out))
	m.say("container booted (systemd PID %d on the host): system %s", m.cpid, st)
	if st != "running" {
		failed, _ := m.insideErr("systemctl", "--failed", "--no-legend", "--plain")
		for _, l := range strings.Split(failed, "\n") {
			t.Logf("    failed unit: %s", l)
		}
	}
}

// containerPID finds the host PID of the container's PID 1 (systemd).
func (m *image) containerPID() {
	m.t.Helper()
	pid, err := netlab.ContainerPID1(m.nspawn, 5*time.Second, 50*time.Millisecond)
	if errors.Is(err, netlab.ErrContainerExited) {
		m.fail("systemd-nspawn exited (see boot logs)")
	} else if err != nil {
		m.fail("%v", err)
	}
	m.cpid = pid
}

// insideErr runs argv in all the container's namespaces and returns its
// standard output, trimmed.
func (m *image) insideErr(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(m.cpid), "-a"}, argv...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), err
}

// inside is insideErr, whose error does not matter (the output is what
// is checked).
func (m *image) inside(argv ...string) string {
	out, _ := m.insideErr(argv...)
	return out
}

// insideLog runs argv in the container with its output in work/log,
// failing the test on error.
func (m *image) insideLog(log string, argv ...string) {
	m.t.Helper()
	m.run(5*time.Minute, log, append([]string{"nsenter", "-t", strconv.Itoa(m.cpid), "-a"}, argv...)...)
}

// waitStatusText waits (bounded) until unit's STATUS= text, as systemd
// shows it, is want: systemd reads the notification on its own time.
func (m *image) waitStatusText(unit, want string) {
	m.t.Helper()
	var got string
	for i := 0; i < 100; i++ {
		if got = m.inside("systemctl", "show", "-p", "StatusText", "--value", unit); got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.fail("%s's status is %q, want %q", unit, got, want)
}

func (m *image) unitProp(p string) string {
	return m.inside("systemctl", "show", "-p", p, "--value", "prewarm-agent.service")
}

// inContainer lists the host PIDs of the container's processes named comm
// (the image has no procps).
func (m *image) inContainer(comm string) []int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.cpid))
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var ps []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		if n, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && n == ns {
			ps = append(ps, pid)
		}
	}
	sort.Ints(ps)
	return ps
}

// eth0 is the container's IPv4 addresses on eth0.
func (m *image) eth0() string {
	return strings.Join(netlab.ParseAddrs(m.inside("ip", "-4", "-o", "addr", "show", "dev", "eth0")), " ")
}

// acks counts dnsmasq's DHCPACKs on vh0.
func (m *image) acks() int {
	n := 0
	for _, l := range m.dnsmasq.Log.Lines() {
		if strings.Contains(l, "DHCPACK(vh0)") {
			n++
		}
	}
	return n
}

// poweroff powers the container off and awaits nspawn's clean exit.
func (m *image) poweroff() {
	m.t.Helper()
	m.inside("systemctl", "poweroff", "--no-block")
	select {
	case <-m.nspawn.Done():
	case <-time.After(60 * time.Second):
		m.fail("the container did not power off within 60s")
	}
	if _, err := m.nspawn.Exited(); err != nil {
		m.fail("systemd-nspawn exited with an error (see logs): %v", err)
	}
	m.nspawn, m.cpid = nil, 0
}
