package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/kardianos/service"

	"github.com/prewarm/prewarm/agent"
	winsvc "github.com/prewarm/prewarm/windows/service"
)

// stopDeadline bounds how long Stop waits for the agent to finish.
const stopDeadline = 10 * time.Second

// program adapts the agent to kardianos/service: Start runs it in a
// goroutine, Stop cancels its context and waits, with a deadline.
type program struct {
	flags  *runFlags
	stderr io.Writer

	cancel context.CancelFunc
	done   chan struct{}
	log    *slog.Logger
	lock   *agent.StateLock
}

func (p *program) Start(service.Service) error {
	// Before anything else: a second agent on the state dir would
	// interleave its report sequence with the first one's. It fails here,
	// having started nothing (the error wraps agent.ErrLocked).
	lock, err := agent.LockStateDir(p.flags.stateDir)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	started := false
	defer func() {
		if !started {
			lock.Release()
		}
	}()
	var once sync.Once
	a, log, err := newAgent(p.flags, p.stderr, func() {
		// Readiness means the first report is written (PROTOCOL.md: the
		// log is written before sending).
		once.Do(func() {
			if err := sdNotify("READY=1"); err != nil {
				p.log.Warn("sd_notify READY=1", "err", err)
			}
		})
	})
	if err != nil {
		return err
	}
	p.log, p.lock, started = log, lock, true
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		if err := a.Run(ctx); err != nil {
			log.Error("agent failed", "err", err)
			os.Exit(1)
		}
	}()
	return nil
}

func (p *program) Stop(service.Service) error {
	_ = sdNotify("STOPPING=1")
	p.cancel()
	select {
	case <-p.done:
		if err := p.lock.Release(); err != nil {
			p.log.Warn("stopped", "err", err)
		}
		return nil
	case <-time.After(stopDeadline):
		return fmt.Errorf("agent did not stop within %s", stopDeadline)
	}
}

// systemdUnit is kardianos' default unit with Type=notify, so systemd
// waits for READY=1 (the first report written) before it counts the agent
// as started.
const systemdUnit = `[Unit]
Description={{Description}}
ConditionFileIsExecutable={{Path | cmdEscape}}
# After the network stack, before network-online: the link watcher is open
# before the first flap (packaging/systemd/prewarm-agent.service, the unit
# the packages install, says the same with hardening on top).
After=network.target
Before=network-online.target
StartLimitIntervalSec=120
StartLimitBurst=10
{{range Dependencies}}{{.}}
{{end}}
[Service]
Type=notify
NotifyAccess=main
ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}
{{if Restart}}Restart={{Restart}}
{{end}}RestartSec=5
# exitAlreadyRunning: another agent holds the state dir's lock.
RestartPreventExitStatus=7
TimeoutStopSec=15
# The DHCP client the agent restarts lands in this cgroup: it must outlive
# an agent restart, or the lease would lapse.
KillMode=process

[Install]
WantedBy=multi-user.target
`

func newService(p *program, args []string) (service.Service, error) {
	opts := service.KeyValue{
		"SystemdScript":          systemdUnit,
		"Restart":                "always",
		"OnFailure":              "restart",
		"OnFailureDelayDuration": "5s",
	}
	osServiceOptions(opts)
	// One name on every OS; on Windows it is also the Event Log source and
	// the service EnsureRecoveryActions configures.
	return service.New(p, &service.Config{
		Name:        winsvc.Name,
		DisplayName: winsvc.DisplayName,
		Description: winsvc.Description,
		Arguments:   args,
		Option:      opts,
	})
}

// cmdRun runs the agent in the foreground, or under the service manager
// when it started us (kardianos tells the two apart).
func cmdRun(args []string, stderr io.Writer) error {
	f := &runFlags{}
	fs := newFlagSet("run", f)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected arguments %q", fs.Args())
	}
	tuneMemory()
	p := &program{flags: f, stderr: stderr}
	s, err := newService(p, f.args())
	if err != nil {
		// No service manager detected (a container, a chroot): run plainly
		// until SIGINT or SIGTERM.
		if err := p.Start(nil); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
		return p.Stop(nil)
	}
	return s.Run()
}

func cmdService(action string, args []string, stderr io.Writer) error {
	f := &runFlags{}
	fs := flag.NewFlagSet(action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if action == "install" {
		f.register(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := newService(&program{flags: f, stderr: stderr}, f.args())
	if err != nil {
		return err
	}
	if err := service.Control(s, action); err != nil {
		if errors.Is(err, service.ErrNotInstalled) {
			return fmt.Errorf("%s: the prewarm-agent service is not installed", action)
		}
		return err
	}
	return nil
}

// tuneMemory keeps the parked agent small: its live heap is a few hundred
// KiB, so a tighter GC target and a soft memory limit cost nothing and make
// the runtime return freed pages to the OS sooner. GOGC and GOMEMLIMIT in
// the environment win.
func tuneMemory() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(8 << 20)
	}
}
