package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

type hostnameSetter struct {
	log *slog.Logger
}

// ApplyHostname sets the computer name to hostname's first label. Windows
// applies it at the next restart, so a change reports RebootRequired, and
// so does a name set by an earlier run that is still pending.
func (h *hostnameSetter) ApplyHostname(ctx context.Context, hostname string) (agent.StepResult, error) {
	var res plan.Result
	name, err := plan.ComputerName(hostname)
	if err != nil {
		return res.StepResult(), fmt.Errorf("set hostname: %w", err)
	}
	active, err := computerName(windows.ComputerNamePhysicalDnsHostname)
	if err != nil {
		return res.StepResult(), fmt.Errorf("read computer name: %w", err)
	}
	pending, err := pendingHostname()
	if err != nil {
		return res.StepResult(), fmt.Errorf("read pending computer name: %w", err)
	}
	set, reboot := plan.Hostname(active, pending, name)
	if set {
		if err := winapi.SetComputerNameEx(winapi.ComputerNamePhysicalDns, name); err != nil {
			return res.StepResult(), fmt.Errorf("set computer name %q: %w", name, err)
		}
		h.log.Info("computer name set; effective after restart", "hostname", name, "was", active)
		res.Did(fmt.Sprintf("set computer name to %s (effective after restart)", name), reboot)
	} else if reboot {
		res.Pending()
	}
	return res.StepResult(), nil
}

func computerName(typ uint32) (string, error) {
	n := uint32(64)
	for range 3 {
		buf := make([]uint16, n)
		err := windows.GetComputerNameEx(typ, &buf[0], &n)
		if err == nil {
			return windows.UTF16ToString(buf[:n]), nil
		}
		if !errors.Is(err, windows.ERROR_MORE_DATA) {
			return "", err
		}
	}
	return "", windows.ERROR_MORE_DATA
}

// pendingHostname reads the host name Windows will use after a restart
// ("" when none is recorded).
func pendingHostname() (string, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Services\Tcpip\Parameters`, registry.QUERY_VALUE)
	if err != nil {
		return "", err
	}
	defer k.Close()
	v, _, err := k.GetStringValue("NV Hostname")
	if errors.Is(err, registry.ErrNotExist) {
		return "", nil
	}
	return v, err
}
