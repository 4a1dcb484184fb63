package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

type dhcpRenewer struct {
	names   []string
	grace   time.Duration
	bounces *plan.Bounces // the link watcher's, shared
	log     *slog.Logger
}

// DHCPInterfaces lists the managed adapters with DHCP enabled.
func (d *dhcpRenewer) DHCPInterfaces(ctx context.Context) ([]string, error) {
	as, err := adapters()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, a := range as {
		if managed(a, d.names) && a.DHCP {
			names = append(names, a.Name)
		}
	}
	return names, nil
}

// RenewDHCP renews iface's lease with IpRenewAddress, unless Windows' own
// client renewed it within the grace period (before the call or while
// waiting out the grace period): then the agent leaves it be. After a
// bounce of the link (the link watcher's events) the renewal is a release
// and a renewal, unless Windows' client got a lease since the bounce
// (plan.ChooseRenewal).
func (d *dhcpRenewer) RenewDHCP(ctx context.Context, iface string) (agent.Lease, error) {
	a, err := findAdapter(iface)
	if err != nil {
		return agent.Lease{}, fmt.Errorf("renew DHCP: %w", err)
	}
	if !a.DHCP {
		return agent.Lease{}, fmt.Errorf("renew DHCP on %s: DHCP is not enabled there", a.Name)
	}
	before, err := leaseObtained(a.Index)
	if err != nil {
		return agent.Lease{}, fmt.Errorf("renew DHCP on %s: %w", a.Name, err)
	}
	var bounced time.Time
	if d.bounces != nil {
		bounced = d.bounces.Since(a.Index)
	}
	how := plan.ChooseRenewal(bounced, before, before, time.Now(), d.grace)
	deadline := time.Now().Add(d.grace)
	for how != plan.RenewNone && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return agent.Lease{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		now, err := leaseObtained(a.Index)
		if err != nil {
			return agent.Lease{}, fmt.Errorf("renew DHCP on %s: %w", a.Name, err)
		}
		how = plan.ChooseRenewal(bounced, before, now, time.Now(), d.grace)
	}
	if how == plan.RenewNone {
		d.log.Info("lease renewed by Windows' DHCP client; not renewing again", "interface", a.Name)
	} else if err := renew(ctx, d.log.With("interface", a.Name), a.Index, how == plan.ReleaseRenew); err != nil {
		return agent.Lease{Interface: a.Name, Client: "windows"}, fmt.Errorf("renew DHCP on %s: %w", a.Name, err)
	} else {
		d.log.Info("DHCP lease renewed", "interface", a.Name, "kind", how.String())
	}
	if d.bounces != nil {
		d.bounces.Renewed(a.Index, bounced)
	}
	after, err := findAdapter(a.GUID)
	if err != nil {
		return agent.Lease{}, fmt.Errorf("renew DHCP: %w", err)
	}
	l := agent.Lease{Interface: after.Name, Client: "windows"}
	for _, u := range a.Unicast { // before the renewal, for the agent's link events
		l.Previous = append(l.Previous, u.Prefix)
	}
	for _, u := range after.Unicast {
		l.Addresses = append(l.Addresses, u.Prefix)
	}
	return l, nil
}

// renew calls IpRenewAddress (after IpReleaseAddress when release is set),
// which blocks until the renewal is done, in a goroutine so that ctx can
// end the wait (the calls themselves then finish on their own).
func renew(ctx context.Context, log *slog.Logger, index uint32, release bool) error {
	maps, err := winapi.AdapterIndexMaps()
	if err != nil {
		return fmt.Errorf("GetInterfaceInfo: %w", err)
	}
	for i := range maps {
		if maps[i].Index != index {
			continue
		}
		m := maps[i]
		done := make(chan error, 1)
		go func() {
			if release {
				// A failed release (an adapter without a lease) does not
				// stop the renewal, which asks anew either way.
				if err := winapi.IpReleaseAddress(&m); err != nil {
					log.Warn("IpReleaseAddress failed; renewing anyway", "err", err)
				}
			}
			if err := winapi.IpRenewAddress(&m); err != nil {
				done <- fmt.Errorf("IpRenewAddress: %w", err)
				return
			}
			done <- nil
		}()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("adapter index %d: %w", index, errNoInterface)
}

// leaseObtained returns when the adapter's current lease was obtained
// (zero if it has none), from GetAdaptersInfo.
func leaseObtained(index uint32) (time.Time, error) {
	size := uint32(16 * 1024)
	for range 4 {
		buf := make([]byte, size)
		err := windows.GetAdaptersInfo((*windows.IpAdapterInfo)(unsafe.Pointer(&buf[0])), &size)
		if errors.Is(err, windows.ERROR_BUFFER_OVERFLOW) {
			continue
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("GetAdaptersInfo: %w", err)
		}
		for ai := (*windows.IpAdapterInfo)(unsafe.Pointer(&buf[0])); ai != nil; ai = ai.Next {
			if ai.Index == index {
				if ai.DhcpEnabled == 0 || ai.LeaseObtained == 0 {
					return time.Time{}, nil
				}
				return time.Unix(ai.LeaseObtained, 0), nil
			}
		}
		return time.Time{}, fmt.Errorf("adapter index %d: %w", index, errNoInterface)
	}
	return time.Time{}, errors.New("GetAdaptersInfo: adapter list kept growing")
}
