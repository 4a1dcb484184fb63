package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeProgram's Stop blocks until its context is done when hang is set,
// else returns at once; it records what it was asked.
type fakeProgram struct {
	startErr error
	hang     bool
	ignore   bool // Stop ignores its context: blocks until release
	release  chan struct{}

	mu       sync.Mutex
	started  bool
	stopped  bool
	deadline time.Duration // the Stop context's deadline, from the call
}

func (p *fakeProgram) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = p.startErr == nil
	return p.startErr
}

func (p *fakeProgram) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	if d, ok := ctx.Deadline(); ok {
		p.deadline = time.Until(d)
	}
	p.mu.Unlock()
	switch {
	case p.ignore:
		<-p.release
		return nil
	case p.hang:
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// statuses collects the reports of one serve.
type statuses struct {
	mu  sync.Mutex
	all []Status
}

func (s *statuses) report(st Status) {
	s.mu.Lock()
	s.all = append(s.all, st)
	s.mu.Unlock()
}

func (s *statuses) get() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.all...)
}

func serveAsync(r *runner, st *statuses) (chan<- Cmd, <-chan uint32) {
	cmds := make(chan Cmd)
	code := make(chan uint32, 1)
	go func() { code <- r.serve(cmds, st.report) }()
	return cmds, code
}

// TestServeStop: start pending, running (accepting stop), an interrogate
// answered with the current status, then a stop: stop pending with a wait
// hint covering the bound, exit code 0.
func TestServeStop(t *testing.T) {
	p := &fakeProgram{}
	var st statuses
	r := newRunner(p, nil)
	cmds, code := serveAsync(r, &st)
	cmds <- CmdOther
	cmds <- CmdInterrogate
	cmds <- CmdStop
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d; want 0", c)
	}
	got := st.get()
	if len(got) != 4 {
		t.Fatalf("statuses %+v; want start pending, running, running (interrogate), stop pending", got)
	}
	if got[0].State != StartPending || got[0].WaitHint <= 0 || got[0].AcceptStop {
		t.Errorf("first status %+v", got[0])
	}
	if got[1].State != Running || !got[1].AcceptStop || got[2] != got[1] {
		t.Errorf("running %+v, interrogate answered %+v", got[1], got[2])
	}
	if s := got[3]; s.State != StopPending || s.CheckPoint != 1 || s.WaitHint < StopTimeout {
		t.Errorf("stop pending %+v; want checkpoint 1 and a wait hint of at least %s", s, StopTimeout)
	}
	if !p.started || !p.stopped || p.deadline <= 0 || p.deadline > StopTimeout {
		t.Errorf("program started %v stopped %v with deadline %s; want a stop bounded by %s", p.started, p.stopped, p.deadline, StopTimeout)
	}
}

// TestServeShutdownBound: at shutdown the stop gets the shorter bound.
func TestServeShutdownBound(t *testing.T) {
	p := &fakeProgram{}
	var st statuses
	cmds, code := serveAsync(newRunner(p, nil), &st)
	cmds <- CmdShutdown
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d", c)
	}
	if p.deadline > ShutdownTimeout {
		t.Errorf("shutdown stop deadline %s; want at most %s", p.deadline, ShutdownTimeout)
	}
	if last := st.get()[2]; last.State != StopPending || last.WaitHint > ShutdownTimeout+checkpointInterval {
		t.Errorf("shutdown stop pending %+v", last)
	}
}

// TestServeSlowStop: a program that takes its whole bound to stop (it
// returns its context's error) still exits 0, not the failure code that
// would restart it, and meanwhile the checkpoint rises.
func TestServeSlowStop(t *testing.T) {
	p := &fakeProgram{hang: true}
	var st statuses
	r := newRunner(p, nil)
	r.stopTimeout, r.interval = 200*time.Millisecond, 10*time.Millisecond
	cmds, code := serveAsync(r, &st)
	cmds <- CmdStop
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d after a stop that overran; want 0", c)
	}
	var cps []uint32
	for _, s := range st.get()[2:] {
		if s.State != StopPending {
			t.Errorf("status %+v while stopping", s)
		}
		if n := len(cps); n > 0 && s.CheckPoint != cps[n-1]+1 {
			t.Errorf("checkpoint %d after %d; want one more each report", s.CheckPoint, cps[n-1])
		}
		cps = append(cps, s.CheckPoint)
	}
	if len(cps) < 2 {
		t.Errorf("checkpoints %v; want the checkpoint raised while the stop waits", cps)
	}
}

// TestServeStopIgnoresDeadline: a program whose Stop never returns does
// not hold the service past its bound.
func TestServeStopIgnoresDeadline(t *testing.T) {
	p := &fakeProgram{ignore: true, release: make(chan struct{})}
	defer close(p.release)
	var st statuses
	r := newRunner(p, nil)
	r.stopTimeout, r.interval = 50*time.Millisecond, 10*time.Millisecond
	cmds, code := serveAsync(r, &st)
	cmds <- CmdStop
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d; want 0", c)
	}
}

var errTest = errors.New("state dir locked")

// TestServeStartFails: a failed start is exit code 1 (the recovery
// actions restart it), with no running status.
func TestServeStartFails(t *testing.T) {
	p := &fakeProgram{startErr: errTest}
	var st statuses
	_, code := serveAsync(newRunner(p, nil), &st)
	if c := <-code; c != 1 {
		t.Fatalf("exit code %d; want 1", c)
	}
	for _, s := range st.get() {
		if s.State == Running {
			t.Errorf("reported running after a failed start: %+v", st.get())
		}
	}
}

// TestServeRequestsClosed: the request channel closing stops the program.
func TestServeRequestsClosed(t *testing.T) {
	p := &fakeProgram{}
	var st statuses
	cmds, code := serveAsync(newRunner(p, nil), &st)
	close(cmds)
	if c := <-code; c != 0 || !p.stopped {
		t.Fatalf("exit code %d, stopped %v", c, p.stopped)
	}
}
