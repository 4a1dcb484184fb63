package main

import (
	"context"
	"log/slog"

	winsvc "github.com/prewarm/prewarm/windows/service"
)

// runUnderSCM runs p with the Windows service handler (winsvc.Run: a
// bounded stop with wait hints, exit code 0 once stopped) when the SCM
// started us; kardianos' Run handles every other case.
func runUnderSCM(p *program) (bool, error) {
	if ok, err := winsvc.IsWindowsService(); err != nil || !ok {
		return false, nil
	}
	return true, winsvc.Run(scmProgram{p}, func() *slog.Logger { return p.log })
}

// scmProgram adapts program to winsvc.Program.
type scmProgram struct{ p *program }

func (s scmProgram) Start() error                   { return s.p.Start(nil) }
func (s scmProgram) Stop(ctx context.Context) error { return s.p.stop(ctx) }
