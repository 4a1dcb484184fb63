package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// EventType says what an Event carries: store.EventType, the feed's own
// types, read as the fleet's (Follow, Watch) rather than one host's (Feed).
type EventType = store.EventType

// Event types.
const (
	// EventResync replaces everything known: Instances is the whole fleet
	// as of Revision. It comes first when following from revision 0, and
	// again whenever the revision to resume from has been compacted.
	EventResync = store.EventResync
	// EventChanged: Instance (registration, host, config) changed at
	// Revision. An instance that moved to another host arrives with
	// Local false.
	EventChanged = store.EventChanged
	// EventDeleted: instance ID was deleted at Revision.
	EventDeleted = store.EventDeleted
	// EventStatus: instance ID reported Status at Revision.
	EventStatus = store.EventStatus
	// EventHealth: etcd became unreachable (Degraded, Err says why) or
	// reachable again (not Degraded).
	EventHealth = store.EventHealth
)

// Event is one change of the fleet's state.
type Event struct {
	Type     EventType
	Revision int64
	// ID is the instance of EventChanged, EventDeleted and EventStatus.
	ID        string
	Instance  Instance
	Instances []Instance
	Status    *status.Report
	Degraded  bool
	Err       error
}

// mirror is the follower's copy of the state it follows (the fleet, or
// one host's instances), so that every event carries a whole instance.
type mirror struct {
	regs map[string]placed[store.Registration]
	cfgs map[string]placed[[]byte]
	last map[string]*status.Report
}

// placed is a value read from hosts/<host>/...
type placed[T any] struct {
	host string
	v    T
}

func newMirror() *mirror {
	return &mirror{regs: map[string]placed[store.Registration]{}, cfgs: map[string]placed[[]byte]{}, last: map[string]*status.Report{}}
}

// put applies one key's value (nil: deleted). It returns the instance id
// and which part changed ("registrations", "configs", "laststatus"), or ""
// for keys that do not describe an instance's state.
func (m *mirror) put(s *Store, key string, val []byte) (id, kind string) {
	rest, ok := strings.CutPrefix(key, s.prefix)
	if !ok {
		return "", ""
	}
	if id, ok := strings.CutPrefix(rest, "laststatus/"); ok {
		if val == nil {
			delete(m.last, id)
			return "", ""
		}
		var r status.Report
		if err := json.Unmarshal(val, &r); err != nil {
			s.log.Warn("ignoring undecodable status", "key", key, "err", err)
			return "", ""
		}
		m.last[id] = &r
		return id, "laststatus"
	}
	rest, ok = strings.CutPrefix(rest, "hosts/")
	if !ok {
		return "", ""
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return "", ""
	}
	host, kind, id := parts[0], parts[1], parts[2]
	switch kind {
	case "laststatus":
		// The serving host's copy of laststatus/<id>.
		return m.put(s, s.prefix+"laststatus/"+id, val)
	case "registrations":
		if val == nil {
			// A handover deletes the old host's key: forget it only if
			// no newer placement replaced it.
			if m.regs[id].host == host {
				delete(m.regs, id)
			}
			return id, kind
		}
		var r store.Registration
		if err := json.Unmarshal(val, &r); err != nil {
			s.log.Warn("ignoring undecodable registration", "key", key, "err", err)
			return "", ""
		}
		m.regs[id] = placed[store.Registration]{host, r}
	case "configs":
		if val == nil {
			if m.cfgs[id].host == host {
				delete(m.cfgs, id)
			}
			return id, kind
		}
		// What a control plane wrote straight into etcd is checked like a
		// publish: a document a guest could not use is not served, and
		// the previous one stays.
		d, err := config.Decode(val)
		if err != nil || d.InstanceID != id || d.Generation <= 0 {
			if err == nil {
				err = fmt.Errorf("instanceId %q and generation %d must be %q and positive", d.InstanceID, d.Generation, id)
			}
			s.log.Warn("ignoring an invalid config document", "key", key, "err", err)
			return "", ""
		}
		m.cfgs[id] = placed[[]byte]{host, val}
	default:
		return "", ""
	}
	return id, kind
}

func (m *mirror) instance(id, me string) (Instance, bool) {
	r, ok := m.regs[id]
	if !ok {
		return Instance{}, false
	}
	in := Instance{HostID: r.host, Local: r.host == me}
	in.ID = id
	in.Registration = r.v
	if c, ok := m.cfgs[id]; ok && c.host == r.host {
		if g, err := docGeneration(c.v); err == nil {
			in.Config, in.Generation = c.v, g
		}
	}
	if l := m.last[id]; l != nil {
		lc := *l
		in.LastStatus = &lc
	}
	return in, true
}

func (m *mirror) instances(me string) []Instance {
	ids := make([]string, 0, len(m.regs))
	for id := range m.regs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]Instance, 0, len(ids))
	for _, id := range ids {
		in, _ := m.instance(id, me)
		out = append(out, in)
	}
	return out
}

// Watch streams the whole fleet's changes after fromRevision on a channel
// that is closed when ctx ends, for control-plane tools: registrations,
// configs, handovers (EventChanged with the new HostID), deletes and
// status reports (EventStatus) of every host. With fromRevision 0 the
// first event is an EventResync of the current state. Otherwise it
// behaves as Follow, but does not make writes wait for it.
func (s *Store) Watch(ctx context.Context, fromRevision int64) <-chan Event {
	ch := make(chan Event)
	go func() {
		defer close(ch)
		s.follow(ctx, fromRevision, false, false, func(ev Event) {
			select {
			case ch <- ev:
			case <-ctx.Done():
			}
		})
	}()
	return ch
}

// Follow calls fn with every change of the instances placed on this
// Store's host after fromRevision, in revision order, until ctx ends; it
// returns ctx's error. It watches only hosts/<host>/, so a host's etcd
// traffic does not grow with the fleet. An instance that leaves the host
// (deleted, or handed over to another host) arrives as EventDeleted, one
// handed over to it as EventChanged, a status report of one of them as
// EventStatus. With fromRevision 0
// it starts with an EventResync of the current state; with a positive one
// it resumes from it silently (the caller is known to hold that state), or
// with an EventResync if it was compacted.
//
// fn runs on Follow's goroutine and must not call the Store's mutating
// methods: while a Follow runs, Apply, Delete and AppendStatus return only
// once fn has seen their revision, which lets a caller keep an index fed
// by fn and still read its own writes. When the follower does not deliver
// it within the request timeout they fail with store.ErrNotVisible (the
// write is durable; it shows once the follower catches up).
//
// Follow probes etcd every HealthInterval; when two probes in a row fail
// it sends an EventHealth with Degraded set, the mutating methods fail at once with
// ErrUnavailable, and when etcd answers again it sends an EventHealth
// without, resumes the watch from the last revision seen (or resyncs if it
// was compacted meanwhile). Run at most one Follow per Store.
func (s *Store) Follow(ctx context.Context, fromRevision int64, fn func(Event)) error {
	return s.follow(ctx, fromRevision, true, true, fn)
}

// Feed implements store.Store: it is Follow from revision 0 with this
// host's view of each event. An instance handed over to another host
// arrives as EventDeleted (it is no longer served here), a resync lists
// this host's instances only, and etcd's unreachability arrives as
// EventHealth. Like Follow, it makes this Store's writes wait for it.
func (s *Store) Feed(ctx context.Context, fn func(store.Event)) error {
	return s.Follow(ctx, 0, func(ev Event) {
		switch ev.Type {
		case EventResync:
			var recs []store.Record
			for _, in := range ev.Instances {
				if in.Local {
					recs = append(recs, in.Record)
				}
			}
			s.log.Info("resynced", "revision", ev.Revision, "instances", len(recs), "fleet", len(ev.Instances))
			fn(store.Event{Type: store.EventResync, Records: recs})
		case EventChanged:
			if ev.Instance.Local {
				fn(store.Event{Type: store.EventChanged, ID: ev.ID, Record: ev.Instance.Record})
			} else {
				fn(store.Event{Type: store.EventDeleted, ID: ev.ID})
			}
		case EventDeleted:
			fn(store.Event{Type: store.EventDeleted, ID: ev.ID})
		case EventStatus:
			fn(store.Event{Type: store.EventStatus, ID: ev.ID, Status: ev.Status})
		case EventHealth:
			var err error
			if ev.Degraded {
				if err = ev.Err; err == nil {
					err = ErrUnavailable
				}
			}
			fn(store.Event{Type: store.EventHealth, Err: err})
		}
	})
}

type follower struct {
	s       *Store
	fn      func(Event)
	barrier bool // writes wait for this follower, and it sets degraded
	local   bool // this host's instances only
	m       *mirror
	rev     int64 // last revision delivered
	bad     bool  // degraded was reported

	// The health probe runs every HealthInterval for the whole Follow,
	// across watch restarts and the waits between them.
	tick    *time.Ticker
	probe   chan error
	probing bool
	fails   int // consecutive failed probes
	watches int // watches started, to give each its own gRPC stream
}

// Backoff of watch restarts and failed loads: from 100 ms, doubling, up to
// 5 s, with jitter.
const (
	restartMin = 100 * time.Millisecond
	restartMax = 5 * time.Second
)

func restartDelay(attempt int) time.Duration {
	d := min(restartMin<<min(attempt, 6), restartMax)
	return d/2 + rand.N(d/2+1)
}

func (s *Store) follow(ctx context.Context, from int64, barrier, local bool, fn func(Event)) error {
	f := &follower{s: s, fn: fn, barrier: barrier, local: local, probe: make(chan error, 1)}
	f.tick = time.NewTicker(s.health)
	defer f.tick.Stop()
	if barrier {
		s.fmu.Lock()
		s.followers++
		s.fmu.Unlock()
		defer func() {
			s.fmu.Lock()
			s.followers--
			s.fmu.Unlock()
			s.degraded.Store(false)
		}()
	}
	// Every wait below is a backoff or a channel receive; the loops end
	// with ctx.
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := f.start(ctx, from)
		if err == nil {
			break
		}
		f.unhealthy(err)
		f.sleep(ctx, restartDelay(attempt))
	}
	for attempt := 0; ctx.Err() == nil; {
		err := f.watch(ctx)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			attempt = 0
			continue
		}
		// A broken watch (a leader election, a member going away) is not
		// yet an outage: the probe decides that. Start it again.
		s.log.Debug("watch ended; starting it again", "revision", f.rev, "err", err)
		f.sleep(ctx, restartDelay(attempt))
		attempt++
	}
	return ctx.Err()
}

// sleep waits d, probing meanwhile; it ends early when ctx ends or etcd
// is found reachable again after an outage.
func (f *follower) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-f.tick.C:
			f.startProbe(ctx)
		case err := <-f.probe:
			if f.probed(ctx, err) {
				return
			}
		}
	}
}

func (f *follower) startProbe(ctx context.Context) {
	if !f.probing {
		f.probing = true
		go func() { f.probe <- f.s.probe(ctx) }()
	}
}

// probeFailures is how many probes in a row must fail before the follower
// reports an outage: one failure can be a leader election, which a write
// rides out by retrying.
const probeFailures = 2

// probed handles a probe's result; it reports true when etcd answered
// again after an outage.
func (f *follower) probed(ctx context.Context, err error) bool {
	f.probing = false
	switch {
	case err != nil && ctx.Err() == nil:
		if f.fails++; f.fails >= probeFailures {
			f.unhealthy(err)
		}
	case err == nil:
		f.fails = 0
		if f.bad {
			f.healthy()
			return true
		}
	}
	return false
}

// start loads the state at from (or the current one) into the mirror.
func (f *follower) start(ctx context.Context, from int64) error {
	if from > 0 {
		m, _, err := f.s.snapshot(ctx, from, f.local)
		if err == nil {
			f.m, f.rev = m, from
			f.healthy()
			return nil
		}
		if !errors.Is(err, rpctypes.ErrCompacted) {
			return err
		}
		f.s.log.Info("resume revision compacted; resyncing", "revision", from)
	}
	return f.resync(ctx)
}

func (f *follower) resync(ctx context.Context) error {
	m, rev, err := f.s.snapshot(ctx, 0, f.local)
	if err != nil {
		return err
	}
	f.m, f.rev = m, rev
	f.healthy()
	f.emit(Event{Type: EventResync, Revision: rev, Instances: m.instances(f.s.host)})
	return nil
}

func (f *follower) emit(ev Event) {
	f.fn(ev)
	if f.barrier && ev.Revision > 0 {
		f.s.setDelivered(ev.Revision)
	}
}

func (f *follower) unhealthy(err error) {
	if f.barrier {
		f.s.degraded.Store(true)
	}
	if !f.bad {
		f.bad = true
		f.s.log.Warn("etcd unavailable; serving read-only", "err", err)
		f.emit(Event{Type: EventHealth, Degraded: true, Err: err})
	}
}

func (f *follower) healthy() {
	if f.barrier {
		f.s.degraded.Store(false)
	}
	if f.bad {
		f.bad = false
		f.s.log.Info("etcd reachable again", "revision", f.rev)
		f.emit(Event{Type: EventHealth})
	}
}

// watch runs one etcd watch from f.rev+1, probing beside it. It returns
// nil when the watch should simply be started again (after a resync or a
// recovery) and an error when it broke.
func (f *follower) watch(ctx context.Context) error {
	s := f.s
	// Each watch gets its own stream (the client shares one per distinct
	// outgoing metadata), so a restart never reuses one that went stale.
	f.watches++
	wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "prewarm-watch", strconv.Itoa(f.watches)))
	defer cancel()
	// Client.Watch blocks until its stream is up, which never happens
	// while etcd is down; the probe must keep running meanwhile.
	opened := make(chan clientv3.WatchChan, 1)
	go func() {
		key := s.prefix
		if f.local {
			key = s.hostDir(s.host)
		}
		opened <- s.cli.Watch(wctx, key, clientv3.WithPrefix(), clientv3.WithRev(f.rev+1))
	}()
	var wch clientv3.WatchChan // nil (never ready) until opened
	// No progress requests: etcd before 3.4.24 may send a progress
	// notification ahead of events it has not sent yet, and the client
	// would resume past them after a reconnect (etcd-io/etcd#15220).
	for {
		select {
		case <-ctx.Done():
			return nil
		case wch = <-opened:
		case <-f.tick.C:
			f.startProbe(ctx)
		case err := <-f.probe:
			if f.probed(ctx, err) {
				// Start over from the last revision seen: the client's
				// own reconnect may have resumed already, but a fresh
				// watch also notices a compaction in between.
				return nil
			}
		case resp, ok := <-wch:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("watch channel closed")
			}
			if resp.CompactRevision > 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				s.log.Info("watch revision compacted; resyncing", "from", f.rev+1, "compacted", resp.CompactRevision)
				return f.resync(ctx)
			}
			if err := resp.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			if resp.Canceled {
				return errors.New("watch canceled by etcd")
			}
			f.apply(resp.Events)
		}
	}
}

// probe is one linearizable read: it fails when etcd is unreachable or has
// no quorum.
func (s *Store) probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, max(2*s.health, 2*time.Second))
	defer cancel()
	_, err := s.cli.Get(pctx, s.prefix+"health", clientv3.WithCountOnly())
	return err
}

// apply folds the events of one watch response into the mirror and emits
// one event per instance and revision (a transaction that registers and
// publishes arrives as one EventChanged).
func (f *follower) apply(evs []*clientv3.Event) {
	for i := 0; i < len(evs); {
		rev := evs[i].Kv.ModRevision
		j := i
		for j < len(evs) && evs[j].Kv.ModRevision == rev {
			j++
		}
		f.applyRevision(rev, evs[i:j])
		i = j
	}
}

func (f *follower) applyRevision(rev int64, evs []*clientv3.Event) {
	type touch struct {
		id            string
		state, status bool
	}
	var order []*touch
	byID := map[string]*touch{}
	existed := map[string]bool{}
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		var val []byte
		if ev.Type == mvccpb.PUT {
			val = ev.Kv.Value
		}
		// Remember presence before this revision's first change of id.
		if id := f.s.keyID(key); id != "" {
			if _, seen := existed[id]; !seen {
				_, existed[id] = f.m.regs[id]
			}
		}
		id, kind := f.m.put(f.s, key, val)
		if id == "" {
			continue
		}
		t := byID[id]
		if t == nil {
			t = &touch{id: id}
			byID[id] = t
			order = append(order, t)
		}
		if kind == "laststatus" {
			t.status = true
		} else {
			t.state = true
		}
	}
	for _, t := range order {
		in, ok := f.m.instance(t.id, f.s.host)
		switch {
		case !ok && existed[t.id]:
			f.emit(Event{Type: EventDeleted, Revision: rev, ID: t.id})
		case !ok:
			// A config or status without a registration: kept in the
			// mirror, shown once the instance is registered.
		default:
			if t.state {
				f.emit(Event{Type: EventChanged, Revision: rev, ID: t.id, Instance: in})
			}
			if t.status && in.LastStatus != nil {
				f.emit(Event{Type: EventStatus, Revision: rev, ID: t.id, Status: in.LastStatus})
			}
		}
	}
	f.rev = rev
	if f.barrier {
		f.s.setDelivered(rev)
	}
}

// keyID returns the instance a key of the layout describes the state of
// (hosts/<host>/registrations|configs/<id>, laststatus/<id>), or "".
func (s *Store) keyID(key string) string {
	rest, ok := strings.CutPrefix(key, s.prefix)
	if !ok {
		return ""
	}
	if id, ok := strings.CutPrefix(rest, "laststatus/"); ok {
		return id
	}
	if rest, ok = strings.CutPrefix(rest, "hosts/"); ok {
		if parts := strings.Split(rest, "/"); len(parts) == 3 {
			return parts[2]
		}
	}
	return ""
}
