package agent

import (
	"context"
	"fmt"
	"runtime"

	"github.com/prewarm/prewarm/shared/config"
)

// Unsupported returns a Platform whose every operation fails with
// ErrNotImplemented, naming the OS: never a silent success. It is what the
// agent runs with on an OS that has no adapter.
func Unsupported() Platform {
	u := unsupported{}
	return Platform{Links: u, DHCP: u, Hostname: u, Timezone: u, Users: u, Network: u}
}

type unsupported struct{}

func errUnsupported(op string) error {
	return fmt.Errorf("%s on %s: %w", op, runtime.GOOS, ErrNotImplemented)
}

func (unsupported) WatchLinks(context.Context) (<-chan LinkEvent, error) {
	return nil, errUnsupported("watch links")
}

func (unsupported) DHCPInterfaces(context.Context) ([]string, error) {
	return nil, errUnsupported("list DHCP interfaces")
}

func (unsupported) RenewDHCP(context.Context, string) (Lease, error) {
	return Lease{}, errUnsupported("renew DHCP")
}

func (unsupported) ApplyHostname(context.Context, string) (StepResult, error) {
	return StepResult{}, errUnsupported("set hostname")
}

func (unsupported) ApplyTimezone(context.Context, string) (StepResult, error) {
	return StepResult{}, errUnsupported("set timezone")
}

func (unsupported) ApplyUsers(context.Context, []config.User) (StepResult, error) {
	return StepResult{}, errUnsupported("manage users")
}

func (unsupported) ApplyNetwork(context.Context, *config.Network) (StepResult, error) {
	return StepResult{}, errUnsupported("configure network")
}
