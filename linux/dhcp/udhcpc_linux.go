package dhcp

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
)

// udhcpcForeground reports whether a udhcpc stays in the foreground (-f):
// a supervisor (runit, s6, a test) started it and would start its old
// command line again if it were stopped.
func udhcpcForeground(argv []string) bool {
	return slices.Contains(argv, "-f") || slices.Contains(argv, "--foreground")
}

// restartUdhcpc replaces a running background udhcpc with one sending
// host: udhcpc reads the host name from its command line only, at start,
// so a renewal signal would send the old one.
//
// Restarting the client is not restarting the interface: the link stays
// up. It costs what the signalled renewal costs anyway (SIGUSR2 then
// SIGUSR1 releases, deconfigures and discovers; a new udhcpc deconfigures
// and discovers): the old one is stopped with SIGTERM (it releases only
// with -R, which it keeps), and the new one, with the same options, the
// same script and PID file, discovers, runs its script, and goes to the
// background once bound, as the old one did. It is started in a session of
// its own, its output to /dev/null, so it outlives the agent (the unit's
// KillMode=process).
func (r *Renewer) restartUdhcpc(ctx context.Context, ow owner, host hostName) error {
	argv := udhcpcArgv(ow.Argv, host)
	// The program: "busybox udhcpc ..." or "udhcpc ..." (busybox's link);
	// busybox is the one the path table names.
	args := argv[1:]
	if filepath.Base(argv[0]) != "busybox" {
		args = append([]string{"udhcpc"}, args...)
	}
	path, err := r.o.Runner.Look("busybox")
	if err != nil {
		return fmt.Errorf("restart udhcpc with the host name: %w", err)
	}
	if err := stopProcess(ctx, r.o.ProcDir, ow.PID); err != nil {
		return fmt.Errorf("restart udhcpc with the host name: %w", err)
	}
	cmd := exec.Command(path, args...)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restart udhcpc with the host name: %w", err)
	}
	// udhcpc forks into the background once bound; its first process
	// then exits, and is reaped here.
	go cmd.Wait()
	r.log.Info("udhcpc restarted to send the host name", "pid", cmd.Process.Pid, "hostname", host.Name(), "cmd", fmt.Sprint(append([]string{path}, args...)))
	return nil
}

// noteHostName logs, for a client that will not send the current host
// name on the renewal about to run, why, and what the image builder can
// do about it: once per client process and name (r.mu held).
func (r *Renewer) noteHostName(ow owner, host hostName) {
	key := fmt.Sprint(ow.Client, "/", ow.PID, "/", host.Name())
	if host.Short == "" || r.noted[key] {
		return
	}
	if r.noted == nil {
		r.noted = map[string]bool{}
	}
	r.noted[key] = true
	switch ow.Client {
	case Dhcpcd:
		if ok, conf := dhcpcdSendsHostName(ow.Argv); !ok {
			r.log.Warn("dhcpcd's config has no hostname option: the renewal does not send the host name (add a line \"hostname\")", "path", conf, "hostname", host.Name())
		}
	case Udhcpc:
		if ow.PID != 0 && udhcpcHostName(ow.Argv) != host.Name() {
			r.log.Warn("udhcpc runs in the foreground (-f) under a supervisor and sends the host name of its command line: the renewal does not send the current one (start it with -x hostname:$(hostname))", "hostname", host.Name())
		}
	}
}
