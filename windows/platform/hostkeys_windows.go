package platform

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/shared/status"
)

// sshdService is the OpenSSH server's service name (the Windows capability
// OpenSSH.Server and the Win32-OpenSSH MSI alike).
const sshdService = "sshd"

// sshdStopTimeout bounds the wait for sshd to stop before it is started
// again with the new keys.
const sshdStopTimeout = 30 * time.Second

// hostKeyManager implements agent.HostKeyManager for the OpenSSH server,
// whose host keys live in %ProgramData%\ssh.
type hostKeyManager struct {
	dir    string // %ProgramData%\ssh, under the target root
	live   bool   // dir is the running system's: ssh-keygen -A writes there
	runner run.Runner
	log    *slog.Logger
	// restart restarts a running sshd and says what it did ("" when sshd
	// is not running or not installed); restartSSHD unless a test sets it.
	restart func(ctx context.Context) (string, error)
}

func newHostKeyManager(root string, runner run.Runner, log *slog.Logger) *hostKeyManager {
	return &hostKeyManager{
		dir:     rooted(root, filepath.Join(programData(), "ssh")),
		live:    root == "",
		runner:  runner,
		log:     log,
		restart: restartSSHD,
	}
}

// HostKeys implements agent.HostKeyManager: the public keys of
// ssh_host_*_key.pub whose private key is there too, in file-name order;
// none when the OpenSSH server is not installed.
func (m *hostKeyManager) HostKeys(context.Context) ([]status.HostKey, error) {
	return agent.ReadHostKeys(m.dir)
}

// RegenerateHostKeys implements agent.HostKeyManager: it removes every
// ssh_host_*_key and its .pub, has `ssh-keygen -A` make the default types
// anew in %ProgramData%\ssh (with the owner-only ACL sshd demands of a
// host key, which ssh-keygen sets as the agent's account, SYSTEM), and
// restarts a running sshd service, which reads its keys only when it
// starts. A crash between the removal and the generation leaves no keys;
// the agent recorded nothing yet, so its restart regenerates them.
func (m *hostKeyManager) RegenerateHostKeys(ctx context.Context) (agent.StepResult, error) {
	var res agent.StepResult
	if !m.live {
		return res, errors.New("regenerate SSH host keys: ssh-keygen -A writes only the running system's %ProgramData%\\ssh, not a target root")
	}
	if st, err := os.Stat(m.dir); err != nil || !st.IsDir() {
		return res, fmt.Errorf("regenerate SSH host keys: no directory %s (is the OpenSSH server installed?)", m.dir)
	}
	old, err := filepath.Glob(filepath.Join(m.dir, "ssh_host_*_key"))
	if err != nil {
		return res, fmt.Errorf("list SSH host keys in %s: %w", m.dir, err)
	}
	for _, p := range old {
		for _, f := range []string{p, p + ".pub"} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("remove old SSH host key: %w", err)
			}
		}
		res.Actions = append(res.Actions, "removed "+p)
	}
	if _, err := m.runner.Run(ctx, run.Cmd{Name: "ssh-keygen", Args: []string{"-A"}}); err != nil {
		return res, fmt.Errorf("generate SSH host keys: %w", err)
	}
	res.Changed = true
	res.Actions = append(res.Actions, "ran ssh-keygen -A")
	a, err := m.restart(ctx)
	if err != nil {
		return res, fmt.Errorf("restart sshd for its new host keys: %w", err)
	}
	if a != "" {
		res.Actions = append(res.Actions, a)
	} else {
		m.log.Info("sshd is not running: nothing to restart")
	}
	return res, nil
}

// restartSSHD stops a running sshd service, waits (bounded) until it has
// stopped, and starts it again. Win32-OpenSSH has no reload; the sessions
// already open are processes of their own and live on.
func restartSSHD(ctx context.Context) (string, error) {
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(sshdService)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("open service %s: %w", sshdService, err)
	}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return "", fmt.Errorf("query service %s: %w", sshdService, err)
	}
	if st.State != svc.Running {
		return "", nil
	}
	if _, err := s.Control(svc.Stop); err != nil {
		return "", fmt.Errorf("stop service %s: %w", sshdService, err)
	}
	deadline := time.Now().Add(sshdStopTimeout)
	for st.State != svc.Stopped {
		if time.Now().After(deadline) {
			return "", fmt.Errorf("service %s did not stop within %s", sshdService, sshdStopTimeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if st, err = s.Query(); err != nil {
			return "", fmt.Errorf("query service %s: %w", sshdService, err)
		}
	}
	if err := s.Start(); err != nil {
		return "", fmt.Errorf("start service %s: %w", sshdService, err)
	}
	return "restarted service " + sshdService, nil
}
