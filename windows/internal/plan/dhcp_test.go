package plan

import (
	"testing"
	"time"
)

func TestChooseRenewal(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	bounce := now.Add(-3 * time.Second)
	old := now.Add(-time.Hour)
	tests := []struct {
		name        string
		bouncedAt   time.Time
		before, cur time.Time
		want        Renewal
	}{
		{"no bounce, old lease", time.Time{}, old, old, RenewOnly},
		{"no bounce, Windows just renewed", time.Time{}, old, now.Add(-time.Second), RenewNone},
		{"no bounce, no lease", time.Time{}, time.Time{}, time.Time{}, RenewOnly},
		{"bounce, lease from before it", bounce, old, old, ReleaseRenew},
		// Windows renewed within the grace period but before the bounce:
		// from the old network, so not enough.
		{"bounce, renewed just before it", bounce, old, bounce.Add(-time.Second), ReleaseRenew},
		{"bounce, Windows renewed after it", bounce, old, bounce.Add(time.Second), RenewNone},
		// LeaseObtained is whole seconds: the bounce's own second is after.
		{"bounce, renewed in its second", bounce.Add(300 * time.Millisecond), old, bounce, RenewNone},
		{"bounce, no lease", bounce, time.Time{}, time.Time{}, ReleaseRenew},
		{"bounce, lease from the future (clock step)", bounce, old, now.Add(time.Hour), ReleaseRenew},
	}
	for _, tt := range tests {
		if got := ChooseRenewal(tt.bouncedAt, tt.before, tt.cur, now, 10*time.Second); got != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestBounces(t *testing.T) {
	var b Bounces
	t1, t2 := time.Unix(10, 0), time.Unix(20, 0)
	if !b.Since(4).IsZero() {
		t.Fatal("a bounce before any")
	}
	b.Mark(4, t2)
	b.Mark(4, t1) // an older event does not move it back
	if got := b.Since(4); !got.Equal(t2) {
		t.Errorf("Since = %v; want %v", got, t2)
	}
	at := b.Since(4)
	b.Mark(4, t2.Add(time.Second)) // bounced again during the renewal
	b.Renewed(4, at)
	if got := b.Since(4); !got.Equal(t2.Add(time.Second)) {
		t.Errorf("a bounce during the renewal was dropped: %v", got)
	}
	b.Renewed(4, b.Since(4))
	if !b.Since(4).IsZero() || !b.Since(5).IsZero() {
		t.Error("a renewed bounce remains")
	}
}
