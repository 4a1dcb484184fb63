package linktrack

import (
	"reflect"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent"
)

func kinds(evs []agent.LinkEvent) []string {
	var k []string
	for _, e := range evs {
		k = append(k, e.Kind.String()+":"+e.Interface)
	}
	return k
}

func newAt(now time.Time) *Tracker {
	t := New()
	t.now = func() time.Time { return now }
	return t
}

// TestSync: a full listing against the last one, as Windows reads its
// adapters (no carrier-change counter); events in the order of the
// indexes, each complete.
func TestSync(t *testing.T) {
	now := time.Unix(1, 0)
	eth := Link{Index: 4, Name: "Ethernet", MAC: "52:54:00:12:34:56", Up: true, Managed: true}
	down := eth
	down.Up = false
	eth2 := Link{Index: 9, Name: "Ethernet 2", MAC: "52:54:00:00:00:09", Managed: true}
	lo := Link{Index: 1, Name: "Loopback", MAC: "00:00:00:00:00:01", Up: true}
	tests := []struct {
		name      string
		prev, cur []Link
		want      []string
	}{
		{"no change", []Link{eth}, []Link{eth}, nil},
		{"lost", []Link{eth}, []Link{down}, []string{"carrier-lost:Ethernet"}},
		{"back", []Link{down}, []Link{eth}, []string{"carrier-back:Ethernet"}},
		{"added up", nil, []Link{eth}, []string{"added:Ethernet", "carrier-back:Ethernet"}},
		{"added down, removed", []Link{eth}, []Link{eth2}, []string{"removed:Ethernet", "added:Ethernet 2"}},
		{"index order", nil, []Link{eth2, eth}, []string{"added:Ethernet", "carrier-back:Ethernet", "added:Ethernet 2"}},
		{"unmanaged ignored", []Link{lo}, []Link{{Index: 1, Name: "Loopback", MAC: lo.MAC}, {Index: 2, Name: "x", MAC: "m"}}, nil},
	}
	for _, tt := range tests {
		tr := newAt(now)
		tr.Seed(tt.prev)
		evs := tr.Sync(tt.cur)
		if got := kinds(evs); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v; want %v", tt.name, got, tt.want)
		}
		for _, e := range evs {
			if e.Time != now || e.MAC == "" || e.Index == 0 {
				t.Errorf("%s: incomplete event %+v", tt.name, e)
			}
		}
		if again := tr.Sync(tt.cur); again != nil {
			t.Errorf("%s: the same listing again: %v", tt.name, kinds(again))
		}
	}
}

// TestUpdate: single notifications, as Linux's rtnetlink sends them, with
// the carrier-change counter.
func TestUpdate(t *testing.T) {
	eth0 := Link{Index: 2, Name: "eth0", MAC: "52:54:00:00:00:02", Up: true, Changes: 2, Managed: true}
	with := func(up bool, changes uint32) Link { l := eth0; l.Up, l.Changes = up, changes; return l }
	tests := []struct {
		name string
		in   []Link
		want []string
	}{
		{"down then up", []Link{with(false, 3), with(true, 4)}, []string{"carrier-lost:eth0", "carrier-back:eth0"}},
		{"bounce within the rate limit", []Link{with(true, 4)}, []string{"carrier-back:eth0"}},
		{"repeat without change", []Link{with(true, 4), with(true, 4)}, []string{"carrier-back:eth0"}},
		{"counter rises while down", []Link{with(false, 3), with(false, 5)}, []string{"carrier-lost:eth0"}},
		// A link known while unmanaged (renamed into a managed name) is not
		// new: it was seen at the start.
		{"becomes managed", []Link{{Index: 3, Name: "eth1", MAC: "m", Up: true, Managed: true}}, nil},
	}
	for _, tt := range tests {
		tr := New()
		tr.Seed([]Link{eth0, {Index: 3, Name: "tmp0", MAC: "m", Up: true}})
		var evs []agent.LinkEvent
		for _, l := range tt.in {
			evs = append(evs, tr.Update(l)...)
		}
		if got := kinds(evs); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v; want %v", tt.name, got, tt.want)
		}
	}
	tr := New()
	tr.Seed([]Link{eth0})
	if got := kinds(tr.Remove(Link{Index: 2})); !reflect.DeepEqual(got, []string{"removed:eth0"}) {
		t.Errorf("Remove by index: %v", got)
	}
	if got := tr.Remove(Link{Index: 2}); got != nil {
		t.Errorf("Remove of an unknown link: %v", kinds(got))
	}
}

func TestQueueCoalescesButKeepsLast(t *testing.T) {
	q := NewQueue()
	for i := range MaxQueued + 10 {
		k := agent.CarrierLost
		if i%2 == 1 {
			k = agent.CarrierBack
		}
		q.Push(agent.LinkEvent{Kind: k, Index: 2, Interface: "eth0", CarrierChanges: uint32(i)})
	}
	q.Push(agent.LinkEvent{Kind: agent.LinkAdded, Index: 3, Interface: "eth1"})
	select {
	case <-q.Notify:
	default:
		t.Fatal("no notification after Push")
	}
	got := q.Take()
	if len(got) > MaxQueued {
		t.Fatalf("%d events queued, want at most %d", len(got), MaxQueued)
	}
	if last := got[len(got)-1]; last.Interface != "eth1" {
		t.Fatalf("last event %+v, want eth1's", last)
	}
	var sawLast bool
	for _, e := range got {
		if e.CarrierChanges == MaxQueued+9 {
			sawLast = true
		}
	}
	if !sawLast {
		t.Fatal("eth0's last event was dropped")
	}
}

func TestBound(t *testing.T) {
	var q []agent.LinkEvent
	for i := range MaxQueued + 40 {
		q = append(q, agent.LinkEvent{Index: i % 2, Kind: agent.CarrierLost + agent.LinkEventKind(i%2)})
	}
	if got := Bound(q); len(got) != 2 || got[0].Index != 0 || got[1].Index != 1 {
		t.Errorf("Bound kept %+v", got)
	}
	if short := Bound(q[:10]); len(short) != 10 {
		t.Errorf("Bound shortened a short queue to %d", len(short))
	}
}

// TestBehind: a state read directly (sysfs) against the last one recorded:
// the carrier-change counter decides where there is one; whether the link
// is up, where there is none; unmanaged links never are behind.
func TestBehind(t *testing.T) {
	eth0 := Link{Index: 2, Name: "eth0", Up: true, Changes: 2, Managed: true}
	win := Link{Index: 4, Name: "Ethernet", Up: true, Managed: true}
	lo := Link{Index: 1, Name: "lo", Up: true}
	tr := New()
	tr.Seed([]Link{eth0, win, lo})
	with := func(l Link, up bool, changes uint32) Link { l.Up, l.Changes = up, changes; return l }
	tests := []struct {
		name string
		cur  Link
		want bool
	}{
		{"same", eth0, false},
		{"carrier off, not yet notified", with(eth0, false, 3), true},
		{"bounced within the rate limit", with(eth0, true, 4), true},
		{"operational state lags, counter same", with(eth0, false, 2), false},
		{"no counter: down", with(win, false, 0), true},
		{"no counter: same", win, false},
		{"unmanaged", with(lo, false, 9), false},
		{"unknown link", Link{Index: 7, Name: "eth7", Up: true, Managed: true}, false},
		{"another link at the index", Link{Index: 2, Name: "eth9", Up: true, Changes: 7, Managed: true}, false},
	}
	for _, tt := range tests {
		if got := tr.Behind(tt.cur); got != tt.want {
			t.Errorf("%s: Behind = %v, want %v", tt.name, got, tt.want)
		}
	}
	if l, ok := tr.Known(2); !ok || l.Changes != 2 {
		t.Errorf("Known(2) = %+v, %v", l, ok)
	}
}
