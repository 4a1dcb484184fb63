// Package etcdtest runs real etcd servers (Debian's etcd-server binary) for
// tests: on loopback, on free ports, in a temporary data directory, killed
// by PID when the test ends.
package etcdtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary finds the etcd server binary: $PREWARM_ETCD, else etcd on PATH,
// else /usr/bin/etcd. It returns "" when there is none.
func Binary() string {
	if p := os.Getenv("PREWARM_ETCD"); p != "" {
		return p
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd"
	}
	return ""
}

// Member is one etcd server process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string

	t       testing.TB
	bin     string
	dir     string
	cluster string // --initial-cluster
	state   string // --initial-cluster-state of the first start
	tls     *TLSFiles

	mu  sync.Mutex
	cmd *exec.Cmd
	out *bytes.Buffer
	// exited is closed when the current process has been waited for.
	exited chan struct{}
}

// Start runs a single-member etcd and returns it once it is healthy. It
// skips the test when no etcd binary is installed.
func Start(t testing.TB) *Member {
	return StartCluster(t, 1)[0]
}

// StartCluster runs an n-member etcd cluster on loopback and returns its
// members once every one is healthy.
func StartCluster(t testing.TB, n int) []*Member {
	t.Helper()
	return startCluster(t, n, nil)
}

// StartTLS runs a single-member etcd that serves clients over TLS and
// requires a client certificate signed by the test CA of the returned
// files.
func StartTLS(t testing.TB) (*Member, *TLSFiles) {
	t.Helper()
	if Binary() == "" {
		t.Skip("etcd server binary not found (apt-get install etcd-server, or set PREWARM_ETCD); skipping the etcd tests")
	}
	files := writeTLSFiles(t, t.TempDir())
	return startCluster(t, 1, files)[0], files
}

func startCluster(t testing.TB, n int, tlsFiles *TLSFiles) []*Member {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("etcd server binary not found (apt-get install etcd-server, or set PREWARM_ETCD); skipping the etcd tests")
	}
	root := t.TempDir()
	ms := make([]*Member, n)
	var cluster []string
	for i := range ms {
		scheme := "http://"
		if tlsFiles != nil {
			scheme = "https://"
		}
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: scheme + freePort(t),
			PeerURL:   "http://" + freePort(t),
			t:         t,
			bin:       bin,
			dir:       filepath.Join(root, fmt.Sprintf("m%d", i)),
			state:     "new",
			tls:       tlsFiles,
		}
		ms[i] = m
		cluster = append(cluster, m.Name+"="+m.PeerURL)
	}
	for _, m := range ms {
		m.cluster = strings.Join(cluster, ",")
		m.start()
		t.Cleanup(m.kill)
	}
	for _, m := range ms {
		m.WaitHealthy()
	}
	return ms
}

// Endpoints returns the client URLs of ms.
func Endpoints(ms []*Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ClientURL)
	}
	return out
}

// freePort returns a loopback host:port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (m *Member) start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	args := []string{
		"--name", m.Name,
		"--data-dir", m.dir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", m.cluster,
		"--initial-cluster-state", m.state,
		"--initial-cluster-token", "prewarm-test",
		"--logger", "zap",
		"--log-level", "warn",
		// Quick elections keep the failure tests short.
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
	}
	if m.tls != nil {
		args = append(args,
			"--cert-file", m.tls.ServerCert,
			"--key-file", m.tls.ServerKey,
			"--client-cert-auth",
			"--trusted-ca-file", m.tls.CA)
	}
	cmd := exec.Command(m.bin, args...)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ETCD_") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	m.out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: m.out}, &lockedWriter{w: m.out}
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	m.cmd = cmd
	exited := make(chan struct{})
	m.exited = exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
}

type lockedWriter struct {
	w *bytes.Buffer
}

var outMu sync.Mutex

func (l *lockedWriter) Write(p []byte) (int, error) {
	outMu.Lock()
	defer outMu.Unlock()
	if l.w.Len() > 1<<20 {
		return len(p), nil
	}
	return l.w.Write(p)
}

// WaitHealthy waits (at most 20 s) until the member's /health answers
// true.
func (m *Member) WaitHealthy() {
	m.t.Helper()
	if err := m.waitHealthy(20 * time.Second); err != nil {
		m.t.Fatalf("etcd %s: %v\n%s", m.Name, err, m.Output())
	}
}

func (m *Member) waitHealthy(limit time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	if m.tls != nil {
		tc, err := m.tls.ClientConfig()
		if err != nil {
			return err
		}
		c.Transport = &http.Transport{TLSClientConfig: tc}
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		exited := m.exited
		m.mu.Unlock()
		select {
		case <-exited:
			return errors.New("exited before becoming healthy")
		default:
		}
		resp, err := c.Get(m.ClientURL + "/health")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(b.String(), `"true"`) {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not healthy after %v", limit)
}

// Stop kills the member (SIGKILL, by PID) and waits for it to exit. Its
// data directory stays, so Restart brings it back.
func (m *Member) Stop() {
	m.kill()
}

func (m *Member) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		m.t.Errorf("etcd %s (pid %d) did not exit after SIGKILL", m.Name, cmd.Process.Pid)
	}
}

// Restart starts a stopped member again on the same ports and data
// directory. It does not wait for health: a lone member of a cluster
// cannot be healthy.
func (m *Member) Restart() {
	m.t.Helper()
	m.kill()
	m.mu.Lock()
	m.state = "existing"
	m.mu.Unlock()
	// The ports were ours a moment ago; a few tries cover a late close.
	for i := 0; i < 20; i++ {
		m.start()
		time.Sleep(200 * time.Millisecond)
		m.mu.Lock()
		exited := m.exited
		m.mu.Unlock()
		select {
		case <-exited:
			continue
		default:
			return
		}
	}
	m.t.Fatalf("restart etcd %s failed:\n%s", m.Name, m.Output())
}

// PID returns the process id of the running member, 0 if none.
func (m *Member) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Output returns what the member logged (at most about 1 MiB).
func (m *Member) Output() string {
	outMu.Lock()
	defer outMu.Unlock()
	if m.out == nil {
		return ""
	}
	return m.out.String()
}
