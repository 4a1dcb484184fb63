package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kardianos/service"
	"github.com/spf13/pflag"

	"github.com/prewarm/prewarm/agent"
	units "github.com/prewarm/prewarm/packaging/systemd"
	"github.com/prewarm/prewarm/shared/status"
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
	a, log, err := newAgent(p.flags, p.stderr, func(r status.Report) {
		// Readiness means the first report is written (PROTOCOL.md: the
		// log is written before sending). STATUS= says, after each
		// report, what the agent did and waits for.
		state := "STATUS=" + statusText(r)
		once.Do(func() { state = "READY=1\n" + state })
		if err := sdNotify(state); err != nil {
			p.log.Warn("sd_notify", "state", r.State, "err", err)
		}
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
	ctx, cancel := context.WithTimeout(context.Background(), stopDeadline)
	defer cancel()
	return p.stop(ctx)
}

// stop cancels the agent and waits for it until ctx is done.
func (p *program) stop(ctx context.Context) error {
	_ = sdNotify("STOPPING=1")
	p.cancel()
	select {
	case <-p.done:
		if err := p.lock.Release(); err != nil {
			p.log.Warn("stopped", "err", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agent did not stop in time: %w", context.Cause(ctx))
	}
}

// systemdUnit is the unit `prewarm-agent install` writes on a systemd
// machine: the one the .deb and .rpm install (packaging/systemd, embedded),
// hardening and all, with its ExecStart running exe with the flags install
// was given that differ from their defaults. Installed as
// /usr/bin/prewarm-agent with no flags, it is that file byte for byte.
func systemdUnit(exe string, f *runFlags) (string, error) {
	if strings.Count(units.AgentUnit, units.AgentExecStart) != 1 {
		return "", errors.New("the embedded unit has no single " + strings.TrimSpace(units.AgentExecStart))
	}
	words := []string{systemdQuote(exe)}
	for _, a := range f.changedArgs() {
		words = append(words, systemdQuote(a))
	}
	exec := "ExecStart=" + strings.Join(words, " ") + " $PREWARM_AGENT_OPTS\n"
	unit := strings.Replace(units.AgentUnit, units.AgentExecStart, exec, 1)
	// kardianos reads the unit as a template: one without actions is
	// written verbatim.
	if strings.Contains(unit, "{{") {
		return "", fmt.Errorf("install: %q cannot stand in a systemd unit", exec)
	}
	return unit, nil
}

// systemdQuote quotes one word of an ExecStart command line: % and $ are
// doubled (systemd would expand them), and a word with other than plain
// characters is double-quoted with C escapes.
func systemdQuote(w string) string {
	w = strings.NewReplacer("%", "%%", "$", "$$").Replace(w)
	plain := w != ""
	for _, r := range w {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("%$+,-./:=@_", r)) {
			plain = false
			break
		}
	}
	if plain {
		return w
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
}

// newService makes the service definition kardianos installs and runs
// under. unit is the systemd unit an install writes (systemdUnit); run and
// the other actions write none and pass "".
func newService(p *program, args []string, unit string) (service.Service, error) {
	opts := service.KeyValue{
		"Restart":                "always",
		"OnFailure":              "restart",
		"OnFailureDelayDuration": "5s",
	}
	if unit != "" {
		opts["SystemdScript"] = unit
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
func cmdRun(f *runFlags, stderr io.Writer) error {
	tuneMemory()
	p := &program{flags: f, stderr: stderr}
	s, err := newService(p, f.args(), "")
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
	if handled, err := runUnderSCM(p); handled {
		return err
	}
	return s.Run()
}

// cmdService runs a service action; f holds install's flags (the
// defaults for the others).
func cmdService(action string, f *runFlags, stderr io.Writer) error {
	if action != "install" {
		f.register(pflag.NewFlagSet(action, pflag.ContinueOnError))
	}
	var unit string
	if action == "install" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("install: locate this binary for the unit's ExecStart: %w", err)
		}
		if unit, err = systemdUnit(exe, f); err != nil {
			return err
		}
	}
	s, err := newService(&program{flags: f, stderr: stderr}, f.args(), unit)
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

// tuneMemory keeps the parked agent small and quiet: its live heap is a few
// hundred KiB, so the soft memory limit (8 MiB, near the runtime's own
// floor: a collection comes after about 1–2 MiB of garbage) is the only
// trigger of a collection. GOGC is off, because with it on the runtime
// forces a collection every two minutes however little was allocated,
// which was most of a parked agent's wake-ups (issue 15: 0.2 wake-ups/s
// with GOGC 50, 0.08 with GOGC off). GOGC and GOMEMLIMIT in the
// environment win (a GOMEMLIMIT alone keeps GOGC at 50).
func tuneMemory() {
	gogc := -1
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(8 << 20)
	} else {
		gogc = 50 // the environment's limit may be large: keep a GC target
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gogc)
	}
	// One P: the agent waits on the network and on the commands it runs.
	// The runtime's collection forced every two minutes then wakes one
	// worker thread, not one per core (measured: 3 context switches
	// instead of up to 88 on two cores).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
