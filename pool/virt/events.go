package virt

import (
	"context"
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// DomainStops reports the name of each domain that stops (shut down,
// destroyed, failed) or crashes, from libvirt's domain lifecycle events
// (virConnectDomainEventRegisterAny, one subscription on the controller's
// connection), so a dead VM is noticed at once instead of at the next
// poll. The channel closes when ctx ends or the connection drops (then
// subscribe again). Events are hints: the caller checks the domains'
// states itself, so a missed or repeated one costs nothing but time.
func (v *Libvirt) DomainStops(ctx context.Context) (<-chan string, error) {
	l, err := v.conn()
	if err != nil {
		return nil, err
	}
	evs, err := l.LifecycleEvents(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe to domain lifecycle events: %w", err)
	}
	out := make(chan string, 16)
	go func() {
		defer close(out)
		// go-libvirt closes evs once ctx ends or the stream shuts down;
		// it must be drained until then, or its sender blocks.
		for ev := range evs {
			switch golibvirt.DomainEventType(ev.Event) {
			case golibvirt.DomainEventStopped, golibvirt.DomainEventCrashed:
			default:
				continue
			}
			select {
			case out <- ev.Dom.Name:
			case <-ctx.Done():
			}
		}
	}()
	return out, nil
}
