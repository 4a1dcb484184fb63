package service

import (
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/windows/svc/mgr"
)

// recoveryActions restart the service 5 s after each of its first three
// failures; the count resets after a day.
var recoveryActions = []mgr.RecoveryAction{
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
}

const recoveryResetSeconds = 86400

// EnsureRecoveryActions makes the SCM restart the service Name after a
// failure, including an exit with a non-zero code (not only a crash). The
// MSI cannot set these (wixl lacks ServiceConfig), so the agent calls this
// at start under the SCM; running it again changes nothing.
func EnsureRecoveryActions() error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(Name)
	if err != nil {
		return fmt.Errorf("open service %s: %w", Name, err)
	}
	defer s.Close()
	cur, err := s.RecoveryActions()
	if err != nil || !slices.Equal(cur, recoveryActions) {
		if err := s.SetRecoveryActions(recoveryActions, recoveryResetSeconds); err != nil {
			return fmt.Errorf("set recovery actions of %s: %w", Name, err)
		}
	}
	if on, err := s.RecoveryActionsOnNonCrashFailures(); err != nil || !on {
		if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
			return fmt.Errorf("set recovery on non-crash failures of %s: %w", Name, err)
		}
	}
	return nil
}
