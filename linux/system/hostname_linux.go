package system

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/shared/config"
	"golang.org/x/sys/unix"
)

// ApplyHostname implements agent.HostnameSetter: /etc/hostname, the
// 127.0.1.1 line of /etc/hosts, and on a live system the kernel hostname
// and hostnamectl when systemd is PID 1 and systemd-hostnamed is running
// (daemonRunning says why not otherwise).
func (s *System) ApplyHostname(ctx context.Context, name string) (agent.StepResult, error) {
	var res agent.StepResult
	name = strings.ToLower(name)
	// The document's own rule (config.ValidHostname), again, for a name
	// that never went through validation.
	if !config.ValidHostname(name) {
		return res, fmt.Errorf("set hostname %q: %w", name, ErrInvalidHostname)
	}
	short, _, _ := strings.Cut(name, ".")
	p := s.path("/etc/hostname")
	changed, err := fsx.WriteFile(p, []byte(name+"\n"), fsx.WriteOptions{Mode: fileMode(p, 0o644)})
	if err != nil {
		return res, fmt.Errorf("set hostname %q: %w", name, err)
	}
	if changed {
		res.Actions = append(res.Actions, "set /etc/hostname")
	}
	hp := s.path("/etc/hosts")
	old, err := os.ReadFile(hp)
	if err != nil && !os.IsNotExist(err) {
		return res, fmt.Errorf("set hostname %q: %w", name, err)
	}
	if err := os.MkdirAll(s.path("/etc"), 0o755); err != nil {
		return res, err
	}
	line := "127.0.1.1\t" + name
	if short != name {
		line += " " + short
	}
	if c, err := fsx.WriteFile(hp, hostsWith(old, line), fsx.WriteOptions{Mode: fileMode(hp, 0o644)}); err != nil {
		return res, fmt.Errorf("set hostname %q: %w", name, err)
	} else if c {
		res.Actions = append(res.Actions, "set the 127.0.1.1 line of /etc/hosts")
	}
	if s.o.Live {
		kernel := name
		if len(kernel) > 64 {
			kernel = short
		}
		cur, err := kernelHostname()
		if err != nil {
			return res, fmt.Errorf("read kernel hostname: %w", err)
		}
		if cur != kernel {
			if err := unix.Sethostname([]byte(kernel)); err != nil {
				return res, fmt.Errorf("set kernel hostname %q: %w", kernel, err)
			}
			res.Actions = append(res.Actions, "set kernel hostname")
		}
		if s.systemdPID1() && len(res.Actions) > 0 && s.daemonRunning("systemd-hostnamed") && s.available("hostnamectl") {
			if _, err := s.o.Runner.Run(ctx, run.Cmd{Name: "hostnamectl", Args: []string{"set-hostname", name}}); err != nil {
				return res, fmt.Errorf("set hostname %q: %w", name, err)
			}
			res.Actions = append(res.Actions, "hostnamectl set-hostname")
		}
	}
	res.Changed = len(res.Actions) > 0
	return res, nil
}

// hostsWith returns /etc/hosts with line as its only 127.0.1.1 entry, in
// place of the first one, else after the 127.0.0.1 line, else first.
func hostsWith(old []byte, line string) []byte {
	var out []string
	done := false
	lines := strings.Split(strings.TrimSuffix(string(old), "\n"), "\n")
	if len(old) == 0 {
		lines = []string{"127.0.0.1\tlocalhost"}
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "127.0.1.1" {
			if !done {
				out = append(out, line)
				done = true
			}
			continue
		}
		out = append(out, l)
	}
	if !done {
		at := 0
		for i, l := range out {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.0.1" {
				at = i + 1
				break
			}
		}
		out = append(out[:at], append([]string{line}, out[at:]...)...)
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

func kernelHostname() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Nodename[:]), nil
}
