package service

import (
	"context"
	"log/slog"
	"time"
)

// Program is what the service runs: Start starts it and returns (the
// service reports running when it has), Stop stops it and returns when it
// has stopped or ctx is done, whichever comes first.
type Program interface {
	Start() error
	Stop(ctx context.Context) error
}

// How long a stop may take. The SCM itself waits as long as a stopping
// service keeps raising its checkpoint within its wait hint, but Windows
// shutting down waits only WaitToKillServiceTimeout (5 s by default on
// Server 2019 and later) for every service together, then ends them.
const (
	// StopTimeout bounds a stop the SCM asks for (sc stop, Stop-Service,
	// an MSI upgrade).
	StopTimeout = 10 * time.Second
	// ShutdownTimeout bounds the stop at system shutdown, under the 5 s
	// Windows grants.
	ShutdownTimeout = 4 * time.Second
	// StartWaitHint is the start-pending wait hint: Start only starts a
	// goroutine (it returns in milliseconds), but takes the state dir's
	// lock and opens the status log first.
	StartWaitHint = 10 * time.Second
	// checkpointInterval is how often a pending stop raises its checkpoint.
	checkpointInterval = time.Second
)

// Cmd is a control request of the service manager.
type Cmd int

// The control requests the runner handles; others are ignored.
const (
	CmdInterrogate Cmd = iota
	CmdStop
	CmdShutdown
	CmdOther
)

// State is a service state reported to the service manager.
type State int

// The states a service reports (SERVICE_START_PENDING...).
const (
	StartPending State = iota
	Running
	StopPending
	Stopped
)

// Status is one report to the service manager (SERVICE_STATUS).
type Status struct {
	State      State
	AcceptStop bool // accepts stop and shutdown requests
	CheckPoint uint32
	WaitHint   time.Duration
}

// runner serves one run of a Program for the service manager. It is the
// OS-neutral half of Run (run_windows.go), which maps x/sys/windows/svc's
// requests and statuses to and from Cmd and Status.
type runner struct {
	prog            Program
	log             func() *slog.Logger
	stopTimeout     time.Duration
	shutdownTimeout time.Duration
	interval        time.Duration
}

// newRunner returns a runner of p that logs to what log returns when it
// returns a logger (nil, or a nil logger: slog's default).
func newRunner(p Program, log func() *slog.Logger) *runner {
	logger := func() *slog.Logger {
		if log != nil {
			if l := log(); l != nil {
				return l
			}
		}
		return slog.Default()
	}
	return &runner{prog: p, log: logger, stopTimeout: StopTimeout, shutdownTimeout: ShutdownTimeout, interval: checkpointInterval}
}

// serve starts the program, reports it running, and on a stop or shutdown
// request stops it within the bound, reporting STOP_PENDING with a wait
// hint and a rising checkpoint meanwhile. It returns the exit code: 0 once
// stopped, however the stop ended (a stop that overran its bound is
// logged, and the process exits anyway: a non-zero code would make the
// SCM run the recovery actions, restarting a service asked to stop), 1 if
// the program failed to start (then the recovery actions should run).
// cmds closing ends the run as a stop would.
func (r *runner) serve(cmds <-chan Cmd, report func(Status)) uint32 {
	report(Status{State: StartPending, WaitHint: StartWaitHint})
	if err := r.prog.Start(); err != nil {
		r.log().Error("service start failed", "err", err)
		return 1
	}
	cur := Status{State: Running, AcceptStop: true}
	report(cur)
	for {
		c, ok := <-cmds
		if !ok {
			c = CmdStop
		}
		switch c {
		case CmdInterrogate:
			report(cur)
			continue
		case CmdStop, CmdShutdown:
		default:
			continue
		}
		bound, why := r.stopTimeout, "stop"
		if c == CmdShutdown {
			bound, why = r.shutdownTimeout, "shutdown"
		}
		r.stop(bound, why, report)
		return 0
	}
}

// stop stops the program within bound, raising the checkpoint every
// interval. The wait hint is what is left of the bound plus one interval.
func (r *runner) stop(bound time.Duration, why string, report func(Status)) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var cp uint32 = 1
	report(Status{State: StopPending, CheckPoint: cp, WaitHint: bound + r.interval})
	done := make(chan error, 1)
	go func() { done <- r.prog.Stop(ctx) }()
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				r.log().Warn("service stopped without finishing", "reason", why, "ms", time.Since(t0).Milliseconds(), "err", err)
			}
			return
		case <-ctx.Done():
			// The program ignored its deadline: exit anyway.
			r.log().Warn("service stop overran its bound; exiting", "reason", why, "timeout", bound)
			return
		case <-tick.C:
			cp++
			left := max(bound-time.Since(t0), 0)
			report(Status{State: StopPending, CheckPoint: cp, WaitHint: left + r.interval})
		}
	}
}
