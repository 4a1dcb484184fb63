package plan

import (
	"sync"
	"time"
)

// SkipRenewal decides whether the agent leaves a DHCP renewal to Windows'
// own client: it does when the lease was obtained again since the agent
// first looked (obtainedBefore), or within grace before now, because the
// built-in client renews by itself on a link change and a second renewal
// would only fight it.
func SkipRenewal(obtainedBefore, obtainedNow, now time.Time, grace time.Duration) bool {
	if obtainedNow.IsZero() {
		return false
	}
	if obtainedNow.After(obtainedBefore) {
		return true
	}
	return now.Sub(obtainedNow) < grace && !obtainedNow.After(now)
}

// Renewal is how the agent renews a lease.
type Renewal int

const (
	// RenewNone: Windows' own client renewed it; the agent leaves it be.
	RenewNone Renewal = iota
	// RenewOnly: IpRenewAddress, a DHCPREQUEST to the server of the lease.
	RenewOnly
	// ReleaseRenew: IpReleaseAddress then IpRenewAddress, a new lease from
	// whatever server answers now.
	ReleaseRenew
)

func (r Renewal) String() string {
	switch r {
	case RenewNone:
		return "none"
	case RenewOnly:
		return "renew"
	case ReleaseRenew:
		return "release+renew"
	}
	return "unknown"
}

// ChooseRenewal decides how to renew a lease. Without a bounce of the link
// since the last renewal (bouncedAt zero) it is SkipRenewal's rule, else a
// renewal. After a bounce (the link went down and up at bouncedAt, as a
// claim re-maps the VM's NIC onto another network) the host may have moved
// the VM to another network: a renewal unicasts to the old lease's server,
// which may be gone, and keeps the old lease until it expires. Then the
// agent releases and renews (as Azure's agent does), unless Windows' own
// client obtained a lease after the bounce (its INIT-REBOOT after the
// media came back asks the current network's server). Windows keeps the
// lease's time in whole seconds, and the watcher notices a bounce after
// the fact: a lease of the bounce's second counts as after it.
func ChooseRenewal(bouncedAt, obtainedBefore, obtainedNow, now time.Time, grace time.Duration) Renewal {
	if bouncedAt.IsZero() {
		if SkipRenewal(obtainedBefore, obtainedNow, now, grace) {
			return RenewNone
		}
		return RenewOnly
	}
	if !obtainedNow.IsZero() && !obtainedNow.Before(bouncedAt.Truncate(time.Second)) && !obtainedNow.After(now) {
		return RenewNone
	}
	return ReleaseRenew
}

// Bounces records when each interface's link last bounced (went down or
// came back), from the link watcher's events, until a renewal of that
// interface succeeds. It is safe for concurrent use.
type Bounces struct {
	mu sync.Mutex
	m  map[uint32]time.Time
}

// Mark records a bounce of the interface index at t.
func (b *Bounces) Mark(index uint32, t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[uint32]time.Time{}
	}
	if t.After(b.m[index]) {
		b.m[index] = t
	}
}

// Since returns the time of the interface's last bounce not yet renewed
// after (zero if none).
func (b *Bounces) Since(index uint32) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[index]
}

// Renewed records that a renewal that began knowing the bounce at at
// succeeded: that bounce is answered. A later bounce is kept.
func (b *Bounces) Renewed(index uint32, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.m[index]; ok && !t.After(at) {
		delete(b.m, index)
	}
}
