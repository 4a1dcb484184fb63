package virtlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// envInit names the environment variable that turns a re-executed test
// binary into a lab's PID 1; its value is the lab's directory.
const envInit = "PREWARM_VIRTLAB_INIT"

// IMDSAddress is the guest API address the lab's prewarm-imds listens on
// (on lo inside the namespace; guests reach it through their bridge's
// gateway, routed by DHCP option 121).
const IMDSAddress = "169.254.169.254"

func init() {
	if dir := os.Getenv(envInit); dir != "" {
		os.Exit(nsInit(dir))
	}
}

// Packages is the apt line that installs what a lab needs.
const Packages = "libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils"

// Require skips t unless the test runs as root with libvirtd, virtlogd,
// QEMU and qemu-img installed.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("virtlab: needs root (namespaces, mounts, libvirtd)")
	}
	var missing []string
	for _, c := range []string{"libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "qemu-img", "ip", "nsenter"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		t.Skipf("virtlab: %s not installed (apt-get install --no-install-recommends %s; make deps does it)",
			strings.Join(missing, ", "), Packages)
	}
}

// Options configure a lab.
type Options struct {
	// IMDS is the path of a prewarm-imds binary to run in the namespace
	// (listening on IMDSAddress:80, admin API on Lab.IMDSSocket); "" for
	// none.
	IMDS string
	// IMDSArgs are extra flags for prewarm-imds serve.
	IMDSArgs []string
}

// Lab is one private libvirt host.
type Lab struct {
	// Dir holds the lab's sockets, logs and data; it is removed at cleanup
	// unless the test failed and KEEP=1 is set.
	Dir string
	// LibvirtSocket is libvirtd's read-write socket.
	LibvirtSocket string
	// IMDSSocket is prewarm-imds's admin socket ("" without an IMDS).
	IMDSSocket string
	// PID is the namespace's PID 1 in this (the test's) PID namespace.
	PID int

	cmd  *exec.Cmd
	done chan struct{}
}

// URI is the libvirt connection URI of the lab, for virsh and other
// libvirt clients.
func (l *Lab) URI() string { return "qemu+unix:///system?socket=" + l.LibvirtSocket }

// Start starts a lab and stops it (the whole namespace) at cleanup.
func Start(t testing.TB, o Options) *Lab {
	t.Helper()
	Require(t)
	l, err := start(o)
	if err != nil {
		t.Fatalf("virtlab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			l.dumpLogs(t)
		}
		l.Stop()
		if !t.Failed() || os.Getenv("KEEP") != "1" {
			os.RemoveAll(l.Dir)
		} else {
			t.Logf("virtlab: kept %s", l.Dir)
		}
	})
	return l
}

// StartManual is Start for programs that are not tests (the demo, the
// benchmark): the caller calls Stop and removes Dir.
func StartManual(o Options) (*Lab, error) { return start(o) }

func start(o Options) (l *Lab, err error) {
	// A short path: QEMU's and libvirt's socket paths live below it.
	dir, err := os.MkdirTemp("", "pwv-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir) // what failed is in the error
		}
	}()
	l = &Lab{Dir: dir, LibvirtSocket: filepath.Join(dir, "run", "libvirt-sock"), done: make(chan struct{})}
	for _, d := range []string{"run", "log", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeConfigs(dir, o); err != nil {
		return nil, err
	}
	if o.IMDS != "" {
		l.IMDSSocket = filepath.Join(dir, "imds.sock")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	logf, err := os.Create(filepath.Join(dir, "init.log"))
	if err != nil {
		w.Close()
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envInit+"="+dir)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{w} // fd 3: the ready line
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		Setpgid:    true,
		// If the test binary dies without its cleanups, the namespace
		// goes with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start the namespace: %w", err)
	}
	w.Close()
	l.cmd, l.PID = cmd, cmd.Process.Pid
	go func() { cmd.Wait(); close(l.done) }()

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s != "ready" {
			l.Stop()
			log, _ := os.ReadFile(filepath.Join(dir, "init.log"))
			return nil, fmt.Errorf("namespace init: %s\n%s", strings.TrimPrefix(s, "error: "), log)
		}
	case <-time.After(60 * time.Second):
		l.Stop()
		return nil, errors.New("namespace init: not ready within 60s")
	}
	return l, nil
}

// Stop kills the namespace's PID 1, which kills every process in it
// (libvirtd, virtlogd, dnsmasq, QEMU, prewarm-imds); the network and mount
// namespaces (bridges, taps, tmpfs state) go with their last process.
func (l *Lab) Stop() {
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	l.cmd.Process.Kill()
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
	}
}

// Command returns argv run in the lab's network and mount namespaces (not
// its PID namespace: the returned command's process is argv itself, so the
// caller can signal it by PID).
func (l *Lab) Command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"--target", fmt.Sprint(l.PID), "--net", "--mount", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs argv in the lab (Command) and returns its combined output.
func (l *Lab) Run(ctx context.Context, argv ...string) (string, error) {
	out, err := l.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Virsh runs virsh against the lab's libvirtd.
func (l *Lab) Virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", l.URI()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// LogPath is the host path of a file under the namespace's
// /var/log/libvirt (such as "qemu/NAME.log").
func (l *Lab) LogPath(name string) string { return filepath.Join(l.Dir, "log", name) }

func (l *Lab) dumpLogs(t testing.TB) {
	for _, name := range []string{"init.log", "imds.log", "log/libvirtd.log"} {
		b, err := os.ReadFile(filepath.Join(l.Dir, name))
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("---- last %d lines of virtlab %s ----\n%s", len(lines), name, strings.Join(lines, "\n"))
	}
}

// writeConfigs writes the daemons' configuration: QEMU runs as root
// without relabelling (the images are the tests' files, not libvirt's), the
// socket needs no authentication (it is 0700 in a private directory).
func writeConfigs(dir string, o Options) error {
	files := map[string]string{
		"etc/libvirtd.conf": `unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`,
		"etc/qemu.conf": `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
`,
		"etc/virtlogd.conf": `log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	var argv []string
	if o.IMDS != "" {
		argv = append([]string{o.IMDS, "serve", "--listen", IMDSAddress + ":80",
			"--admin-socket", filepath.Join(dir, "imds.sock"), "--data-dir", filepath.Join(dir, "imds-data")}, o.IMDSArgs...)
	}
	return os.WriteFile(filepath.Join(dir, "etc", "imds.argv"), []byte(strings.Join(argv, "\x00")), 0o644)
}

// nsInit is the namespace's PID 1: set up, start the daemons, say ready on
// fd 3, then reap orphans until killed.
func nsInit(dir string) int {
	ready := os.NewFile(3, "ready")
	if err := setup(dir); err != nil {
		fmt.Fprintf(ready, "error: %v\n", err)
		fmt.Fprintf(os.Stderr, "virtlab init: %v\n", err)
		return 1
	}
	fmt.Fprintln(ready, "ready")
	ready.Close()
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		switch <-sig {
		case syscall.SIGTERM, syscall.SIGINT:
			return 0
		}
	}
}

func setup(dir string) error {
	must := func(err error, what string) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := must(unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""), "make / private"); err != nil {
		return err
	}
	if err := must(unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""), "mount /proc"); err != nil {
		return err
	}
	// Private, empty state: pid files, persistent definitions (/etc/libvirt/qemu),
	// domain state and caches on tmpfs; the run and log directories are
	// the lab's, so the test reaches the sockets and reads the logs.
	// /run too: the daemons' pid files (/run/libvirtd.pid, /run/virtlogd.pid)
	// would clash with another lab's or this machine's.
	// Every directory libvirt writes persistent definitions to: domains and
	// networks (qemu), storage pools, secrets.
	for _, d := range []string{"/run", "/etc/libvirt/qemu", "/etc/libvirt/storage", "/etc/libvirt/secrets",
		"/var/lib/libvirt", "/var/cache/libvirt"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := must(unix.Mount("tmpfs", d, "tmpfs", 0, "mode=0755"), "tmpfs on "+d); err != nil {
			return err
		}
	}
	// A sysfs of this network namespace, so libvirt sees the lab's links
	// (its bridges and taps), not this machine's; the cgroup trees move
	// over from the old /sys.
	if err := os.MkdirAll("/var/lib/libvirt/.cgroup", 0o755); err != nil {
		return err
	}
	if err := must(unix.Mount("/sys/fs/cgroup", "/var/lib/libvirt/.cgroup", "", unix.MS_BIND|unix.MS_REC, ""), "bind the cgroup tree"); err != nil {
		return err
	}
	if err := must(unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""), "mount /sys"); err != nil {
		return err
	}
	if err := must(unix.Mount("/var/lib/libvirt/.cgroup", "/sys/fs/cgroup", "", unix.MS_MOVE, ""), "move the cgroup tree"); err != nil {
		return err
	}
	binds := [][2]string{
		{filepath.Join(dir, "run"), "/run/libvirt"},
		{filepath.Join(dir, "log"), "/var/log/libvirt"},
	}
	for _, b := range binds {
		if err := os.MkdirAll(b[1], 0o755); err != nil {
			return err
		}
		if err := must(unix.Mount(b[0], b[1], "", unix.MS_BIND, ""), "bind "+b[1]); err != nil {
			return err
		}
	}
	for _, d := range []string{"/var/lib/libvirt/qemu", "/var/lib/libvirt/dnsmasq", "/var/lib/libvirt/images",
		"/var/cache/libvirt/qemu", "/var/log/libvirt/qemu", "/run/libvirt/qemu", "/etc/libvirt/qemu/networks"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	run := func(argv ...string) error {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := run("ip", "link", "set", "lo", "up"); err != nil {
		return err
	}
	if err := run("ip", "addr", "add", IMDSAddress+"/32", "dev", "lo"); err != nil {
		return err
	}
	if err := run("virtlogd", "-d", "-f", filepath.Join(dir, "etc", "virtlogd.conf")); err != nil {
		return err
	}
	// libvirtd reads qemu.conf from /etc/libvirt: the lab's copy over it,
	// in this mount namespace only.
	if err := must(unix.Mount(filepath.Join(dir, "etc", "qemu.conf"), "/etc/libvirt/qemu.conf", "", unix.MS_BIND, ""), "bind qemu.conf"); err != nil {
		return err
	}
	if err := run("libvirtd", "-d", "-f", filepath.Join(dir, "etc", "libvirtd.conf")); err != nil {
		return err
	}
	sock := filepath.Join(dir, "run", "libvirt-sock")
	if err := waitSocket(sock, 30*time.Second); err != nil {
		return fmt.Errorf("libvirtd: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "etc", "imds.argv"))
	if err != nil {
		return err
	}
	if len(b) > 0 {
		argv := strings.Split(string(b), "\x00")
		f, err := os.Create(filepath.Join(dir, "imds.log"))
		if err != nil {
			return err
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start prewarm-imds: %w", err)
		}
		f.Close()
		// Reaped by the loop in nsInit like every other child.
		if err := waitSocket(filepath.Join(dir, "imds.sock"), 30*time.Second); err != nil {
			return fmt.Errorf("prewarm-imds: %w", err)
		}
	}
	return nil
}

// waitSocket waits until a Unix socket at path accepts a connection.
func waitSocket(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		unix.Close(fd)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no connection within %v: %w", path, limit, err)
		}
		time.Sleep(delay)
	}
}
