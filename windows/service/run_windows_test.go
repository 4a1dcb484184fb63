package service

import (
	"testing"

	"golang.org/x/sys/windows/svc"
)

// TestExecute drives the svc.Handler as the SCM's dispatcher would (no SCM
// needed: it runs under Wine): start pending, running accepting stop and
// shutdown, an interrogate answered, stop pending with a wait hint in
// milliseconds, and a normal exit (no service-specific code) after a stop.
func TestExecute(t *testing.T) {
	h := &handler{r: newRunner(&fakeProgram{}, nil)}
	reqs := make(chan svc.ChangeRequest)
	changes := make(chan svc.Status, 16)
	type result struct {
		ssec bool
		code uint32
	}
	res := make(chan result, 1)
	go func() {
		ssec, code := h.Execute(nil, reqs, changes)
		res <- result{ssec, code}
	}()
	if s := <-changes; s.State != svc.StartPending || s.WaitHint != uint32(StartWaitHint.Milliseconds()) {
		t.Errorf("first status %+v", s)
	}
	if s := <-changes; s.State != svc.Running || s.Accepts != svc.AcceptStop|svc.AcceptShutdown {
		t.Errorf("running status %+v", s)
	}
	reqs <- svc.ChangeRequest{Cmd: svc.Interrogate}
	if s := <-changes; s.State != svc.Running {
		t.Errorf("interrogate answered %+v", s)
	}
	reqs <- svc.ChangeRequest{Cmd: svc.Stop}
	if s := <-changes; s.State != svc.StopPending || s.CheckPoint != 1 || s.WaitHint < uint32(StopTimeout.Milliseconds()) {
		t.Errorf("stop pending %+v", s)
	}
	if r := <-res; r.ssec || r.code != 0 {
		t.Errorf("Execute returned %+v; want a normal exit", r)
	}
}

// TestExecuteStartFails: a failed start is a service-specific exit code,
// which the recovery actions act on.
func TestExecuteStartFails(t *testing.T) {
	h := &handler{r: newRunner(&fakeProgram{startErr: errTest}, nil)}
	changes := make(chan svc.Status, 4)
	ssec, code := h.Execute(nil, make(chan svc.ChangeRequest), changes)
	if !ssec || code != 1 {
		t.Errorf("Execute = %v, %d; want a service-specific code 1", ssec, code)
	}
}
