package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The VM harness: Debian's kernel (downloaded once with apt-get into
// e2e/.cache, which git ignores), an initramfs written here (busybox-static,
// the agent, the virtio modules, an init script), QEMU under TCG with two
// virtio NICs on tap devices in the lab's host namespace, and the QEMU
// monitor for set_link.

// vmModules is the load order of the virtio NIC (HARNESS.md).
var vmModules = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "failover", "net_failover", "virtio_net"}

// Kernel is an extracted Debian kernel: vmlinuz and the virtio modules.
type Kernel struct {
	Vmlinuz string
	Modules map[string]string // name → .ko path
}

var kernelMu sync.Mutex

// cacheDir is e2e/.cache (tests run in the package directory).
func cacheDir() (string, error) {
	if d := os.Getenv("PREWARM_E2E_CACHE"); d != "" {
		return d, os.MkdirAll(d, 0o755)
	}
	d, err := filepath.Abs(".cache")
	if err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0o755)
}

// DebianKernel returns the cached kernel, downloading the newest
// linux-image-6.1.0-*-amd64 with apt-get the first time. It skips the test
// when no kernel can be had (no apt, no network).
func DebianKernel(t testing.TB) Kernel {
	t.Helper()
	kernelMu.Lock()
	defer kernelMu.Unlock()
	dir, err := cacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	debs, _ := filepath.Glob(filepath.Join(dir, "linux-image-6.1.0-*-amd64_*.deb"))
	if len(debs) == 0 {
		out, err := run(ctx, "sh", "-c", `apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | cut -d' ' -f1 | sort -V | tail -1`)
		pkg := strings.TrimSpace(out)
		if err != nil || pkg == "" {
			t.Skipf("e2e VM: no Debian kernel package known to apt (%v)", err)
		}
		cmd := exec.CommandContext(ctx, "apt-get", "download", pkg)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("e2e VM: apt-get download %s: %v: %s", pkg, err, out)
		}
		debs, _ = filepath.Glob(filepath.Join(dir, "linux-image-6.1.0-*-amd64_*.deb"))
		if len(debs) == 0 {
			t.Skip("e2e VM: apt-get download left no .deb")
		}
	}
	sort.Strings(debs)
	deb := debs[len(debs)-1]
	kdir := strings.TrimSuffix(deb, ".deb")
	k, err := loadKernel(kdir)
	if err == nil {
		return k
	}
	os.RemoveAll(kdir) // incomplete
	// Extract into a private directory and rename it into place, so that
	// two test processes sharing the cache do not trip over each other.
	tmp, err := os.MkdirTemp(dir, ".extract-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	pats := []string{"./boot/vmlinuz-*"}
	for _, m := range vmModules {
		pats = append(pats, "*/"+m+".ko")
	}
	script := fmt.Sprintf("dpkg-deb --fsys-tarfile %q | tar -x -C %q --wildcards %s", deb, tmp, "'"+strings.Join(pats, "' '")+"'")
	if _, err := run(ctx, "sh", "-c", script); err != nil {
		t.Fatalf("extract kernel: %v", err)
	}
	if err := os.Rename(tmp, kdir); err != nil {
		if k, lerr := loadKernel(kdir); lerr == nil {
			return k // another process won the race
		}
		t.Fatal(err)
	}
	k, err = loadKernel(kdir)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func loadKernel(dir string) (Kernel, error) {
	vm, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(vm) != 1 {
		return Kernel{}, fmt.Errorf("no vmlinuz in %s", dir)
	}
	k := Kernel{Vmlinuz: vm[0], Modules: map[string]string{}}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			k.Modules[strings.TrimSuffix(filepath.Base(p), ".ko")] = p
		}
		return nil
	})
	for _, m := range vmModules {
		if k.Modules[m] == "" {
			return Kernel{}, fmt.Errorf("module %s missing in %s", m, dir)
		}
	}
	return k, nil
}

// cpioWriter writes a newc (SVR4, no CRC) archive, the initramfs format.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func (c *cpioWriter) header(name string, mode uint32, size int, linkTarget string) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string) { c.header(name, 0o040755, 0, "") }

// File adds a regular file with the given contents and permissions.
func (c *cpioWriter) File(name string, data []byte, perm uint32) {
	c.header(name, 0o100000|perm, len(data), "")
	c.write(data)
	c.pad(len(data))
}

// Symlink adds a symbolic link.
func (c *cpioWriter) Symlink(name, target string) {
	c.header(name, 0o120777, len(target), target)
	c.write([]byte(target))
	c.pad(len(target))
}

// Close writes the trailer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, "")
	return c.err
}

// InitramfsSpec says what goes into the VM's initramfs besides busybox and
// the virtio modules.
type InitramfsSpec struct {
	Init  string            // the /init script
	Files map[string]string // guest path → host file to copy (0755 when executable)
	Text  map[string]string // guest path → contents (0644; 0755 under /bin)
}

// BuildInitramfs writes the initramfs to path.
func BuildInitramfs(k Kernel, spec InitramfsSpec, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	c := &cpioWriter{w: bw}
	dirs := map[string]bool{}
	mkdirs := func(p string) {
		var parts []string
		for d := filepath.Dir(p); d != "." && d != "/" && d != ""; d = filepath.Dir(d) {
			parts = append(parts, d)
		}
		for i := len(parts) - 1; i >= 0; i-- {
			if !dirs[parts[i]] {
				dirs[parts[i]] = true
				c.Dir(strings.TrimPrefix(parts[i], "/"))
			}
		}
	}
	for _, d := range []string{"/bin/x", "/sbin/x", "/usr/bin/x", "/usr/sbin/x", "/proc/x", "/sys/x", "/dev/x", "/run/x", "/tmp/x", "/etc/x", "/var/log/x", "/var/lib/x", "/root/x", "/lib/modules/x"} {
		mkdirs(d)
	}
	add := func(guest, host string) error {
		b, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		fi, _ := os.Stat(host)
		mkdirs(guest)
		c.File(strings.TrimPrefix(guest, "/"), b, uint32(fi.Mode().Perm()))
		return nil
	}
	if err := add("/bin/busybox", "/bin/busybox"); err != nil {
		return fmt.Errorf("busybox (apt-get install busybox-static): %w", err)
	}
	c.Symlink("bin/sh", "busybox")
	for _, m := range vmModules {
		if err := add("/lib/modules/"+m+".ko", k.Modules[m]); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(spec.Files))
	for g := range spec.Files {
		keys = append(keys, g)
	}
	sort.Strings(keys)
	for _, g := range keys {
		if err := add(g, spec.Files[g]); err != nil {
			return err
		}
	}
	keys = keys[:0]
	for g := range spec.Text {
		keys = append(keys, g)
	}
	sort.Strings(keys)
	for _, g := range keys {
		mkdirs(g)
		perm := uint32(0o644)
		if strings.HasPrefix(g, "/bin/") || strings.HasPrefix(g, "/etc/init") || strings.HasSuffix(g, ".script") {
			perm = 0o755
		}
		c.File(strings.TrimPrefix(g, "/"), []byte(spec.Text[g]), perm)
	}
	c.File("init", []byte(spec.Init), 0o755)
	if err := c.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// VM is a QEMU guest with NICs on tap devices of a lab's host namespace.
type VM struct {
	Lab     *Lab
	QEMU    *Proc // its output is the serial console
	Monitor *Monitor
	NICs    []*Guest // the network side of each NIC (tap, MAC, networks)
}

// AddTap adds guest network i on a tap device tapN (not a veth pair): the
// host side of one VM NIC, with the same addresses and reservation as a
// namespace guest. Call before StartLab.
func (l *Lab) AddTap(i int) *Guest {
	t := l.T
	g := l.newGuest(i)
	g.HostIf = fmt.Sprintf("tap%d", i)
	h := l.HostNS
	h.IP(t, "tuntap", "add", "dev", g.HostIf, "mode", "tap")
	l.hostSide(g)
	l.Guests = append(l.Guests, g)
	return g
}

// StartVM boots QEMU with one virtio NIC per tap guest of the lab (netdev
// n0, n1, ... in that order), the given kernel command line extras and
// initramfs, and waits for readyLine on the console.
func (l *Lab) StartVM(ctx context.Context, k Kernel, initrd string, readyLine string) (*VM, error) {
	t := l.T
	mon := filepath.Join(l.HostDir, "qemu-monitor.sock")
	args := []string{"nsenter", "--net=" + l.HostNS.Path(), "--",
		"qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "384",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
		"-serial", "stdio",
		"-monitor", "unix:" + mon + ",server,nowait",
	}
	for i, g := range l.Guests {
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=n%d,ifname=%s,script=no,downscript=no", i, g.HostIf),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s,romfile=", i, g.MAC))
	}
	p, err := startProc(t, l.HostDir, "qemu", false, args...)
	if err != nil {
		return nil, err
	}
	l.echo(p)
	vm := &VM{Lab: l, QEMU: p, NICs: l.Guests}
	// The monitor socket appears once QEMU is up.
	delay := 5 * time.Millisecond
	for {
		m, err := DialMonitor(mon)
		if err == nil {
			vm.Monitor = m
			t.Cleanup(func() { m.Close() })
			break
		}
		if done, perr := p.Exited(); done {
			return nil, fmt.Errorf("qemu exited: %v", perr)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemu monitor: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
	if readyLine != "" {
		if _, _, err := p.Log.WaitFrom(ctx, 0, readyLine); err != nil {
			return nil, fmt.Errorf("VM boot: %w", err)
		}
	}
	return vm, nil
}

// Monitor is a connection to QEMU's human monitor.
type Monitor struct {
	mu sync.Mutex
	c  net.Conn
	r  *bufio.Reader
}

// DialMonitor connects to the monitor socket and reads its banner.
func DialMonitor(path string) (*Monitor, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, err
	}
	m := &Monitor{c: c, r: bufio.NewReader(c)}
	if _, err := m.readPrompt(); err != nil {
		c.Close()
		return nil, err
	}
	return m, nil
}

func (m *Monitor) readPrompt() (string, error) {
	m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	for {
		r, _, err := m.r.ReadRune()
		if err != nil {
			return b.String(), fmt.Errorf("qemu monitor: %w", err)
		}
		b.WriteRune(r)
		if strings.HasSuffix(b.String(), "(qemu) ") {
			return b.String(), nil
		}
	}
}

// Cmd runs one monitor command and returns its output.
func (m *Monitor) Cmd(cmd string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(m.c, cmd+"\n"); err != nil {
		return "", err
	}
	out, err := m.readPrompt()
	if err != nil {
		return out, err
	}
	out = strings.TrimSuffix(out, "(qemu) ")
	if strings.Contains(out, "rror") {
		return out, fmt.Errorf("qemu monitor %q: %s", cmd, strings.TrimSpace(out))
	}
	return out, nil
}

// SetLink sets NIC netdev nI's link on or off.
func (m *Monitor) SetLink(netdev string, up bool) (time.Time, error) {
	s := "off"
	if up {
		s = "on"
	}
	_, err := m.Cmd("set_link " + netdev + " " + s)
	return time.Now(), err
}

// Close closes the monitor connection.
func (m *Monitor) Close() error { return m.c.Close() }
