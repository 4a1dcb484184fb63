package system

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/shared/status"
)

// sshDir is where OpenSSH keeps its host keys, inside the target root.
const sshDir = "/etc/ssh"

// hostKeyTypes are the key types a regeneration makes when the image has
// none (what `ssh-keygen -A` makes), in that order; DSA is gone from
// OpenSSH and never made.
var hostKeyTypes = []string{"rsa", "ecdsa", "ed25519"}

// hostKeyFile is the private key file of a type, ssh_host_TYPE_key.
func hostKeyFile(typ string) string { return "ssh_host_" + typ + "_key" }

// HostKeys implements agent.HostKeyManager: the public keys of
// /etc/ssh/ssh_host_*_key.pub whose private key is there too (sshd serves
// only those), in file-name order. No /etc/ssh, or no keys, is no keys.
func (s *System) HostKeys(context.Context) ([]status.HostKey, error) {
	return agent.ReadHostKeys(s.path(sshDir))
}

// RegenerateHostKeys implements agent.HostKeyManager, as `ssh-keygen -A`
// after removing the keys would, under the target root: it makes new keys
// of the types the image has (of rsa, ecdsa and ed25519; all three when it
// has none), each generated beside its place and renamed over the old one,
// so sshd never finds a type missing or a private key without its public
// one; then it removes the host keys of other types, and has a running
// sshd load the new keys.
func (s *System) RegenerateHostKeys(ctx context.Context) (agent.StepResult, error) {
	var res agent.StepResult
	dir := s.path(sshDir)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return res, fmt.Errorf("regenerate SSH host keys: no directory %s (is an SSH server installed?)", dir)
	}
	old, err := filepath.Glob(filepath.Join(dir, "ssh_host_*_key"))
	if err != nil {
		return res, fmt.Errorf("list SSH host keys in %s: %w", dir, err)
	}
	var types []string
	for _, t := range hostKeyTypes {
		if slices.Contains(old, filepath.Join(dir, hostKeyFile(t))) {
			types = append(types, t)
		}
	}
	if len(types) == 0 {
		types = hostKeyTypes
	}
	for _, t := range types {
		if err := s.newHostKey(ctx, dir, t); err != nil {
			return res, err
		}
		res.Actions = append(res.Actions, "generated "+filepath.Join(sshDir, hostKeyFile(t)))
		res.Changed = true
	}
	for _, p := range old {
		if slices.Contains(types, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "ssh_host_"), "_key")) {
			continue
		}
		for _, f := range []string{p, p + ".pub"} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("remove old SSH host key: %w", err)
			}
		}
		res.Actions = append(res.Actions, "removed "+filepath.Join(sshDir, filepath.Base(p)))
	}
	if err := syncDir(dir); err != nil {
		return res, fmt.Errorf("regenerate SSH host keys: %w", err)
	}
	if a, err := s.reloadSSHD(ctx); err != nil {
		return res, err
	} else if a != "" {
		res.Actions = append(res.Actions, a)
	}
	return res, nil
}

// newHostKey generates the key of type typ as .prewarm-ssh_host_TYPE_key
// in dir and renames it, and its .pub, over ssh_host_TYPE_key.
func (s *System) newHostKey(ctx context.Context, dir, typ string) error {
	final := filepath.Join(dir, hostKeyFile(typ))
	tmp := filepath.Join(dir, ".prewarm-"+hostKeyFile(typ))
	for _, f := range []string{tmp, tmp + ".pub"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("generate SSH host key: %w", err)
		}
	}
	// ssh-keygen -A's comment, user@host, says nothing a tenant needs;
	// known_hosts lines carry none.
	args := []string{"-q", "-t", typ, "-N", "", "-C", "", "-f", tmp}
	if _, err := s.o.Runner.Run(ctx, run.Cmd{Name: "ssh-keygen", Args: args}); err != nil {
		return fmt.Errorf("generate SSH host key %s: %w", typ, err)
	}
	// The public key first: a crash between the renames leaves the old
	// private key with the new public one, which the next regeneration
	// (the agent did not record this one) replaces.
	for _, suffix := range []string{".pub", ""} {
		if err := os.Rename(tmp+suffix, final+suffix); err != nil {
			return fmt.Errorf("install SSH host key: %w", err)
		}
	}
	return nil
}

// reloadSSHD has a running sshd load the new host keys (it reads them only
// when it starts or on SIGHUP) and says what it did, or "" when no sshd
// runs: one started later reads the new keys anyway. Under systemd it asks
// systemctl (the unit is sshd.service on Red Hat and SUSE and an alias of
// Debian's ssh.service); otherwise it signals the pid of /run/sshd.pid.
func (s *System) reloadSSHD(ctx context.Context) (string, error) {
	if !s.daemonRunning("sshd") {
		s.log.Info("sshd is not running: nothing to reload")
		return "", nil
	}
	if s.systemdPID1() && s.available("systemctl") {
		var errs []error
		for _, unit := range []string{"sshd.service", "ssh.service"} {
			_, err := s.o.Runner.Run(ctx, run.Cmd{Name: "systemctl", Args: []string{"reload", unit}})
			if err == nil {
				return "reloaded " + unit, nil
			}
			errs = append(errs, err)
		}
		return "", fmt.Errorf("reload sshd for its new host keys: %w", errors.Join(errs...))
	}
	pidFile := s.path("/run/sshd.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return "", fmt.Errorf("reload sshd for its new host keys: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return "", fmt.Errorf("reload sshd for its new host keys: %s holds no process id", pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return "", fmt.Errorf("reload sshd (pid %d) for its new host keys: %w", pid, err)
	}
	return "sent SIGHUP to sshd (pid " + strconv.Itoa(pid) + ")", nil
}

// syncDir flushes dir, so the renames survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
