package netlab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// guestEnv marks a test binary re-run inside a namespace by StartTest or
// RunTest.
const guestEnv = "NETLAB_GUEST"

// InGuest reports whether this process is the inner side of a test, re-run
// inside a namespace.
func InGuest() bool { return os.Getenv(guestEnv) != "" }

// testArgv is this binary running test function name alone.
func testArgv(t testing.TB, name string, timeout time.Duration) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, "-test.run=^" + name + "$", "-test.v", "-test.count=1", fmt.Sprintf("-test.timeout=%s", timeout)}
}

// RunTest runs test function name of this binary inside the namespace
// (with guestEnv set and env added), bounded by timeout, logs its output
// and fails the test if it fails.
func (n *Netns) RunTest(t testing.TB, name string, timeout time.Duration, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	defer cancel()
	cmd := n.Command(ctx, testArgv(t, name, timeout)...)
	cmd.Env = append(os.Environ(), append([]string{guestEnv + "=" + n.Name}, env...)...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s in namespace %s:\n%s", name, n.Name, out)
	if err != nil {
		t.Fatalf("%s in namespace %s: %v", name, n.Name, err)
	}
}

// Guest is a test function of this binary running inside a namespace,
// talking line by line over its stdin and stdout: it prints protocol lines
// "PWL: <word> ..." and reads commands.
type Guest struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	t     testing.TB
}

// StartTest runs test function name of this binary inside the namespace
// with guestEnv and env (KEY=VALUE) set, and stops it when the test ends
// (closing its stdin, then killing it by PID after 10 s).
func (n *Netns) StartTest(t testing.TB, name string, env ...string) *Guest {
	t.Helper()
	return n.startTest(t, nil, name, env...)
}

// startTest is StartTest with the test binary run under wrap (a command
// that execs its arguments, such as unshare).
func (n *Netns) startTest(t testing.TB, wrap []string, name string, env ...string) *Guest {
	t.Helper()
	a := n.Argv(append(wrap, testArgv(t, name, 120*time.Second)...)...)
	cmd := exec.Command(a[0], a[1:]...)
	cmd.Env = append(os.Environ(), append([]string{guestEnv + "=" + n.Name}, env...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &Guest{cmd: cmd, in: in, lines: make(chan string, 1024), t: t}
	go func() {
		defer close(g.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			t.Logf("guest: %s", line)
			g.lines <- line
		}
	}()
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return g
}

// Expect waits (bounded) for a protocol line "PWL: <prefix>..." and
// returns it without "PWL: ".
func (g *Guest) Expect(prefix string, timeout time.Duration) string {
	g.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-g.lines:
			if !ok {
				g.t.Fatalf("guest exited before %q", prefix)
			}
			if rest, ok := strings.CutPrefix(l, "PWL: "); ok && strings.HasPrefix(rest, prefix) {
				return rest
			}
			if strings.HasPrefix(l, "--- FAIL") || strings.HasPrefix(l, "FAIL") {
				g.t.Fatalf("guest failed before %q: %s", prefix, l)
			}
		case <-deadline:
			g.t.Fatalf("no %q from the guest within %s", prefix, timeout)
		}
	}
}

// Send writes one command line to the guest.
func (g *Guest) Send(line string) {
	fmt.Fprintln(g.in, line)
}

// Wait closes the guest's stdin and waits for it to pass.
func (g *Guest) Wait() {
	g.t.Helper()
	g.in.Close()
	for l := range g.lines {
		_ = l
	}
	if err := g.cmd.Wait(); err != nil {
		g.t.Fatalf("guest: %v", err)
	}
}

// Collect gathers the protocol lines starting with prefix until none has
// arrived for quiet (or max has passed).
func (g *Guest) Collect(prefix string, quiet, max time.Duration) []string {
	var out []string
	end := time.After(max)
	for {
		select {
		case l, ok := <-g.lines:
			if !ok {
				return out
			}
			if rest, ok := strings.CutPrefix(l, "PWL: "); ok && strings.HasPrefix(rest, prefix) {
				out = append(out, rest)
			}
		case <-time.After(quiet):
			return out
		case <-end:
			return out
		}
	}
}

// PrivateFiles isolates the files of a guest process that `ip netns exec`
// started (StartTest, RunTest: a private mount namespace) before it runs
// DHCP clients: / becomes a slave mount, /run and dhcpcd's state directory
// private tmpfs, and /etc/resolv.conf a copy in dir, so no client writes
// the machine's. It refuses to mount in the machine's own mount namespace.
func PrivateFiles(t testing.TB, dir string) {
	t.Helper()
	self, _ := os.Readlink("/proc/self/ns/mnt")
	init, _ := os.Readlink("/proc/1/ns/mnt")
	if self == "" || self == init {
		t.Fatal("netlab.PrivateFiles: not in a private mount namespace; refusing to mount")
	}
	must := func(what string, err error) {
		if err != nil {
			t.Fatalf("netlab.PrivateFiles: %s: %v", what, err)
		}
	}
	must("make / a slave", unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""))
	must("tmpfs on /run", unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"))
	if st, err := os.Stat("/var/lib/dhcpcd"); err == nil && st.IsDir() {
		must("tmpfs on /var/lib/dhcpcd", unix.Mount("tmpfs", "/var/lib/dhcpcd", "tmpfs", 0, "mode=0755"))
	}
	rc := filepath.Join(dir, "resolv.conf")
	must("write "+rc, os.WriteFile(rc, []byte("# netlab guest\n"), 0o644))
	must("bind /etc/resolv.conf", unix.Mount(rc, "/etc/resolv.conf", "", unix.MS_BIND, ""))
}
