package service

import (
	"log/slog"

	"golang.org/x/sys/windows/svc"
)

// Run runs p as the service Name under the SCM, in place of
// kardianos/service's own handler: kardianos reports STOP_PENDING without a
// wait hint, waits for Stop however long it takes, and exits with code 2
// when Stop fails, which with recovery on non-crash failures
// (EnsureRecoveryActions) restarts a service the administrator stopped.
// Run bounds the stop (StopTimeout, ShutdownTimeout at system shutdown),
// reports STOP_PENDING with a wait hint and a rising checkpoint every
// second, and exits 0 once stopped. log returns the program's logger
// (known once it started); without one the lines go to slog.Default().
func Run(p Program, log func() *slog.Logger) error {
	return svc.Run(Name, &handler{r: newRunner(p, log)})
}

type handler struct{ r *runner }

// Execute implements svc.Handler.
func (h *handler) Execute(_ []string, reqs <-chan svc.ChangeRequest, changes chan<- svc.Status) (bool, uint32) {
	cmds := make(chan Cmd)
	stop := make(chan struct{})
	defer close(stop)
	var cur svc.Status
	report := func(s Status) {
		cur = toSvc(s)
		changes <- cur
	}
	go func() {
		defer close(cmds)
		for {
			select {
			case <-stop:
				return
			case c, ok := <-reqs:
				if !ok {
					return
				}
				select {
				case cmds <- fromSvc(c.Cmd):
				case <-stop:
					return
				}
			}
		}
	}()
	code := h.r.serve(cmds, report)
	if code != 0 {
		return true, code // a service-specific exit code: the recovery actions run
	}
	return false, 0
}

func fromSvc(c svc.Cmd) Cmd {
	switch c {
	case svc.Interrogate:
		return CmdInterrogate
	case svc.Stop:
		return CmdStop
	case svc.Shutdown:
		return CmdShutdown
	}
	return CmdOther
}

func toSvc(s Status) svc.Status {
	out := svc.Status{CheckPoint: s.CheckPoint, WaitHint: uint32(s.WaitHint.Milliseconds())}
	switch s.State {
	case StartPending:
		out.State = svc.StartPending
	case Running:
		out.State = svc.Running
	case StopPending:
		out.State = svc.StopPending
	case Stopped:
		out.State = svc.Stopped
	}
	if s.AcceptStop {
		out.Accepts = svc.AcceptStop | svc.AcceptShutdown
	}
	return out
}
