// Package server is prewarm-imds's composition root: the in-memory index
// of instances and their documents, and the two HTTP APIs over it, the
// guest API (PROTOCOL.md section 2: guest.go, respond.go, longpoll.go) and
// the admin API (section 3: admin.go), with the publish directory's
// adapter (publishfile.go) and the metrics. The sockets guests reach it on
// and what watches them are imds/guestnet's; the watching and reading of
// the publish directory is imds/publishdir's; durable state is imds/store's.
//
// Starting one in-process, for example in a test, takes four lines:
//
//	srv, err := server.New(server.Options{DataDir: t.TempDir()})
//	ln, err := net.Listen("tcp", "127.0.0.1:0")
//	go srv.ServeGuest(ln, "")
//	_, err = srv.Register(ctx, "vm-1", api.Registration{Addresses: []string{"127.0.0.1"}})
//
// after which every request to ln from 127.0.0.1 is attributed to vm-1, and
// srv.Publish(ctx, "vm-1", doc, nil) publishes its config. The admin API is
// srv.AdminHandler() (serve it with ServeAdmin or httptest). Shutdown answers
// parked long-polls, stops every listener served and closes the store.
//
// A guest is identified by the host interface its request arrived on
// (a listener bound to that device: ServeGuest with a hostInterface, or the
// listeners Options.BindInterfaces makes the server keep for every
// registered hostInterface), else by its source address (never on a listener opened
// for a registered hostInterface: see lookup). Parked long-polls on HTTP/1
// connections hold no goroutine (longpoll.go). Guest connections per source
// and in total (registered sources and unknown ones each with their own
// budget), parked polls per instance and the time a request body may take
// are bounded, so one guest, or callers no instance matches, cannot use up
// what the others need.
//
// The server holds an in-memory index of the registry (address and host
// interface to instance) and each instance's current document, encoded
// once per publish, so that a guest GET is a map lookup and one write. The
// store's change feed is the index's only writer (follow.go): a change is
// durable before the index shows it, and a write returns once it does.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/prewarm/prewarm/imds/dialect"
	"github.com/prewarm/prewarm/imds/guestnet"
	"github.com/prewarm/prewarm/imds/publishdir"
	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// Defaults of the per-instance token bucket used by the CLI.
const (
	DefaultRate  = 20
	DefaultBurst = 40
)

// Options configure a Server.
type Options struct {
	// Store is the durable state. When nil, New opens a bbolt store in
	// DataDir and Shutdown closes it. A Store passed in is not closed.
	Store store.Store
	// DataDir is where the bbolt store lives when Store is nil.
	DataDir string
	// StartContext bounds how long New waits for the store's first feed
	// event (with etcd: its first snapshot, or the news that it is down):
	// when it ends, New gives up with its error. Nil waits as the store
	// does. The CLI passes its signal context, so a SIGTERM during
	// start-up ends it at once.
	StartContext context.Context
	// Rate is each instance's token bucket rate in requests per second;
	// 0 turns rate limiting off (the CLI's default is DefaultRate).
	Rate float64
	// Burst is the bucket size; 0 means DefaultBurst.
	Burst int
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// PublishDir, when set, is watched for DIR/<id>.json files (section 3).
	PublishDir string
	// GuestListener is the device-less guest listener
	// (guestnet.Listen), needed by BindInterfaces. New does not serve it:
	// serve it with ServeGuest(GuestListener, "").
	GuestListener *guestnet.Listener
	// BindInterfaces makes the server keep a guest listener bound to each
	// registered hostInterface and each of GuestInterfaces on
	// GuestListener's address (SO_BINDTODEVICE, Linux), binding a device
	// when it appears and rebinding it when it is re-created
	// (guestnet.Binder: every one newer than GuestListener, as
	// SO_REUSEPORT needs). Requests on such a listener are attributed to
	// the instance registered with that hostInterface.
	BindInterfaces bool
	// GuestInterfaces are host devices to bind even before an instance
	// registers them (with BindInterfaces).
	GuestInterfaces []string
	// MaxConnsPerSource bounds the open guest connections of one source
	// (0: guestnet.DefaultMaxConnsPerSource; negative: no bound): a source address
	// on the device-less listener, the device on a device-bound one. Past
	// it a new connection is closed at once.
	MaxConnsPerSource int
	// MaxGuestConns bounds the open guest connections of registered
	// sources on all listeners together (0: guestnet.DefaultMaxGuestConns;
	// negative: no bound). Past it a new connection of a registered
	// source is closed at once.
	MaxGuestConns int
	// MaxUnknownConns bounds the open guest connections of sources that
	// match no registered instance when they connect, on all listeners
	// together (0: guestnet.DefaultMaxUnknownConns; negative: no bound of their
	// own). They count against it instead of MaxGuestConns, so unknown
	// callers cannot take the connections registered guests need. Past it
	// a new connection of an unknown source is closed at once.
	MaxUnknownConns int
	// MaxParkedPerInstance bounds one instance's parked long-polls on
	// HTTP/1 listeners (0: DefaultMaxParked; negative: no bound). A new
	// poll past it answers the instance's oldest parked poll 304, so the
	// newest always waits.
	MaxParkedPerInstance int
	// Dialects are the cloud metadata dialects (PROTOCOL.md section 5)
	// the guest listeners speak besides the native API; nil means the
	// native API only. A set without "native" turns the native paths off.
	Dialects *dialect.Set
	// Now is the clock; nil means time.Now. Tests may swap it.
	Now func() time.Time
	// StaleAfter is how long an instance whose guest has not settled on
	// its published generation may go without a report before it counts
	// as stale (fleet.go); 0 means DefaultStaleAfter, negative never.
	StaleAfter time.Duration
}

// Server is one prewarm-imds. Its methods are safe for concurrent use.
type Server struct {
	opts      Options
	log       *slog.Logger
	st        store.Store
	ownsStore bool
	m         *metrics
	health    storeHealth
	panicLog  panicLog
	fleet     *fleet // the fleet view (fleet.go)

	// writeMu serializes this server's own changes, so that Register's
	// created answer is exact for writes through this server and Shutdown
	// closes the store between two of them. The order of the index is the
	// feed's (follow.go), not writeMu's.
	writeMu sync.Mutex

	// feedStop ends the store's feed; feedDone is closed when it ended.
	feedStop context.CancelFunc
	feedDone chan struct{}

	mu sync.RWMutex
	// indexVer counts the changes of byAddr and byIface (written with mu
	// held for writing), so that a guest connection knows when the
	// instance it was attributed to may have changed (identifyConn).
	indexVer atomic.Uint64
	byID     map[string]*instance
	byAddr   map[netip.Addr]*instance
	byIface  map[string]*instance

	shutdown     chan struct{}
	shutdownOnce sync.Once
	closing      atomic.Bool

	srvMu   sync.Mutex
	servers map[*http.Server]struct{}
	// guestIfaces are the host interfaces ServeGuest serves; "" stands
	// for a listener without one.
	guestIfaces map[string]bool

	pd      *publishdir.Dir
	binder  *guestnet.Binder // nil without Options.BindInterfaces
	limiter *guestnet.ConnLimiter
	// bodyTimeout bounds a guest request body's arrival (tests shorten it
	// before serving).
	bodyTimeout time.Duration
	// sweeper enforces the guest connections' header and idle timeouts
	// (sweep.go; tests shorten them before serving).
	sweeper *connSweeper
	peers   *guestnet.PeerWatch // nil where unsupported

	guest http.Handler
	admin http.Handler
}

// instance is the in-memory state of one registered instance. The fields
// behind cur change by replacing the snapshot, so the guest path reads them
// without a lock.
type instance struct {
	id      string
	limiter *rate.Limiter // nil when rate limiting is off

	cur atomic.Pointer[snapshot]

	statusMu   sync.Mutex
	lastStatus *status.Report
	// statusWake fires when a report arrives (or the instance is
	// forgotten).
	statusWake changeSignal

	// appendMu makes appendStatus's duplicate check and its store write
	// one step, so two copies of one report sent at once are stored once.
	// lastAppended is the last report this server stored (lastStatus is
	// the feed's, and a shared store's feed may hold a newer one from
	// another host).
	appendMu     sync.Mutex
	lastAppended *status.Report

	// polls are the hijacked long-polls parked on this instance (see
	// longpoll.go); they hold no goroutine.
	pollMu  sync.Mutex
	polls   map[*parkedPoll]struct{}
	pollSeq uint64

	// ahead is what this instance's guest showed of a generation above
	// the current one (epoch.go).
	ahead aheadState
}

// snapshot is one immutable view of an instance: its registration and its
// current document. changed is closed when a newer snapshot replaces it.
type snapshot struct {
	reg        store.Registration
	generation int64
	doc        []byte   // stamped document; nil while none is published
	epoch      string   // the store's epoch when the snapshot was made
	etag       []string // {`"<generation>.<epoch>"`} (api.ETag)
	length     []string // {len(doc)} when net/http would not count it (autoLengthMax), else nil
	deleted    bool
	changed    chan struct{}
	// view is the dialects' view of this snapshot (nil without dialects).
	view *dialect.View
}

// ValidID reports whether id is a valid instance id.
func ValidID(id string) bool { return api.ValidInstanceID(id) }

// New builds a Server and starts following its store's change feed; it
// returns once the index holds the store's state (or a shared store is
// known to be unreachable: the server then starts degraded and fills its
// index when the store answers). It starts the publish-directory watcher
// when opts.PublishDir is set; it serves nothing until ServeGuest /
// ServeAdmin or the handlers are used.
func New(opts Options) (*Server, error) {
	if opts.Rate < 0 {
		return nil, fmt.Errorf("rate %v: must not be negative", opts.Rate)
	}
	if opts.Burst < 0 {
		return nil, fmt.Errorf("burst %d: must not be negative", opts.Burst)
	}
	if opts.Burst == 0 {
		opts.Burst = DefaultBurst
	}
	if opts.BindInterfaces && opts.GuestListener == nil {
		return nil, errors.New("server options: BindInterfaces needs GuestListener (the device-less guest listener the device listeners share an address with)")
	}
	if len(opts.GuestInterfaces) > 0 && !opts.BindInterfaces {
		return nil, errors.New("server options: GuestInterfaces needs BindInterfaces")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StaleAfter == 0 {
		opts.StaleAfter = DefaultStaleAfter
	}
	if opts.MaxConnsPerSource == 0 {
		opts.MaxConnsPerSource = guestnet.DefaultMaxConnsPerSource
	}
	if opts.MaxParkedPerInstance == 0 {
		opts.MaxParkedPerInstance = DefaultMaxParked
	}
	if opts.MaxGuestConns == 0 {
		opts.MaxGuestConns = guestnet.DefaultMaxGuestConns
	}
	if opts.MaxUnknownConns == 0 {
		opts.MaxUnknownConns = guestnet.DefaultMaxUnknownConns
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		opts:     opts,
		log:      log,
		st:       opts.Store,
		byID:     map[string]*instance{},
		byAddr:   map[netip.Addr]*instance{},
		byIface:  map[string]*instance{},
		shutdown: make(chan struct{}),
		servers:  map[*http.Server]struct{}{},
		fleet:    newFleet(opts.Now, opts.StaleAfter),

		guestIfaces: map[string]bool{},
		bodyTimeout: DefaultGuestBodyTimeout,
		sweeper:     newConnSweeper(guestHeaderTimeout, guestIdleTimeout, guestSweepEvery),
	}
	if s.st == nil {
		if opts.DataDir == "" {
			return nil, errors.New("server options: Store or DataDir is required")
		}
		b, err := store.OpenBolt(opts.DataDir)
		if err != nil {
			return nil, err
		}
		s.st, s.ownsStore = b, true
	}
	m := newMetrics(s)
	s.m = m
	s.limiter = guestnet.NewConnLimiter(guestnet.ConnLimits{
		PerSource:  opts.MaxConnsPerSource,
		Registered: opts.MaxGuestConns,
		Unknown:    opts.MaxUnknownConns,
		IsRegistered: func(iface string, addr netip.Addr, byDeviceOnly bool) bool {
			return s.lookup(iface, addr, byDeviceOnly) != nil
		},
		OnRefuse: func(limit string) { m.connsRefused.WithLabelValues(limit).Inc() },
		Logger:   log,
	})
	s.guest = s.recoverer("guest", http.HandlerFunc(s.serveGuest))
	s.admin = s.recoverer("admin", s.adminRouter())
	// The binder starts before the feed, which kicks it with every
	// registry change.
	if opts.BindInterfaces {
		s.binder = opts.GuestListener.StartBinder(guestnet.BinderOptions{
			Static:     opts.GuestInterfaces,
			Registered: s.registeredIfaces,
			Serve:      s.serveBound,
			Logger:     log,
		})
	}
	if err := s.startFeed(); err != nil {
		if s.binder != nil {
			s.binder.Stop()
		}
		s.closeStore()
		return nil, err
	}
	if opts.PublishDir != "" {
		pd, err := s.startPublishDir(opts.PublishDir)
		if err != nil {
			if s.binder != nil {
				s.binder.Stop()
			}
			s.stopFeed()
			s.closeStore()
			return nil, err
		}
		s.pd = pd
	}
	if pw, err := guestnet.NewPeerWatch(); err == nil {
		s.peers = pw
	} else {
		s.log.Debug("parked long-polls are released at their timeout only", "err", err)
	}
	return s, nil
}

func (s *Server) closeStore() {
	if s.ownsStore {
		if err := s.st.Close(); err != nil {
			s.log.Error("close store", "err", err)
		}
	}
}

func (s *Server) newSnapshot(id string, reg store.Registration, gen int64, doc []byte) *snapshot {
	sn := &snapshot{reg: reg, generation: gen, doc: doc, epoch: s.st.Epoch(), changed: make(chan struct{})}
	if doc != nil {
		sn.etag = []string{api.ETag{Generation: gen, Epoch: sn.epoch}.String()}
		if len(doc) > autoLengthMax {
			sn.length = []string{fmt.Sprint(len(doc))}
		}
	}
	if s.opts.Dialects != nil {
		sn.view = &dialect.View{ID: id, Addresses: reg.Addresses, HostInterface: reg.HostInterface, Generation: gen}
		if doc != nil {
			var d config.Document
			if err := json.Unmarshal(doc, &d); err != nil {
				s.log.Error("decode stored config for the dialects", "instance", id, "err", err)
			} else {
				sn.view.Doc = &d
			}
		}
	}
	return sn
}

// Current implements dialect.Instance.
func (inst *instance) Current() (*dialect.View, <-chan struct{}) {
	sn := inst.cur.Load()
	return sn.view, sn.changed
}

// index installs rec in the in-memory registry, replacing what was there.
// Only the store's feed calls it (follow.go).
func (s *Server) index(rec store.Record) *instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.byID[rec.ID]
	var old *snapshot
	if inst == nil {
		inst = &instance{id: rec.ID, lastStatus: rec.LastStatus, polls: map[*parkedPoll]struct{}{}}
		if s.opts.Rate > 0 {
			inst.limiter = rate.NewLimiter(rate.Limit(s.opts.Rate), s.opts.Burst)
		}
		s.byID[rec.ID] = inst
	} else {
		old = inst.cur.Load()
		for _, a := range old.reg.Addresses {
			if p, err := netip.ParseAddr(a); err == nil && s.byAddr[p] == inst {
				delete(s.byAddr, p)
			}
		}
		if d := old.reg.HostInterface; d != "" && s.byIface[d] == inst {
			delete(s.byIface, d)
		}
	}
	for _, a := range rec.Addresses {
		if p, err := netip.ParseAddr(a); err == nil {
			s.byAddr[p] = inst
		}
	}
	if rec.HostInterface != "" {
		s.byIface[rec.HostInterface] = inst
	}
	s.indexVer.Add(1)
	inst.cur.Store(s.newSnapshot(rec.ID, rec.Registration, rec.Generation, rec.Config))
	if old != nil {
		close(old.changed)
	}
	return inst
}

// unindex removes id from the in-memory registry and wakes its waiters.
func (s *Server) unindex(id string) *instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.byID[id]
	if inst == nil {
		return nil
	}
	delete(s.byID, id)
	old := inst.cur.Load()
	for _, a := range old.reg.Addresses {
		if p, err := netip.ParseAddr(a); err == nil && s.byAddr[p] == inst {
			delete(s.byAddr, p)
		}
	}
	if d := old.reg.HostInterface; d != "" && s.byIface[d] == inst {
		delete(s.byIface, d)
	}
	s.indexVer.Add(1)
	sn := &snapshot{reg: old.reg, generation: old.generation, doc: old.doc, epoch: old.epoch, etag: old.etag, length: old.length,
		deleted: true, changed: make(chan struct{})}
	if v := old.view; v != nil {
		sn.view = &dialect.View{ID: v.ID, Addresses: v.Addresses, HostInterface: v.HostInterface, Generation: v.Generation, Doc: v.Doc, Deleted: true}
	}
	inst.cur.Store(sn)
	close(old.changed)
	inst.statusWake.fire()
	return inst
}

// lookup finds the instance a guest request belongs to: by the host
// interface it arrived on when an instance is registered with it, else by
// source address unless byDeviceOnly. A listener the binder opened for a
// registered hostInterface is byDeviceOnly: a guest behind that device
// must not claim an address-only instance's identity by using its address
// (while the device has no instance, between a re-registration and the
// binder closing the listener).
func (s *Server) lookup(iface string, addr netip.Addr, byDeviceOnly bool) *instance {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lookupLocked(iface, addr, byDeviceOnly)
}

// lookupLocked is lookup with s.mu held.
func (s *Server) lookupLocked(iface string, addr netip.Addr, byDeviceOnly bool) *instance {
	if iface != "" {
		if inst := s.byIface[iface]; inst != nil {
			return inst
		}
		if byDeviceOnly {
			return nil
		}
	}
	return s.byAddr[addr]
}

func (s *Server) get(id string) *instance {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byID[id]
}

// Error is an API error: the HTTP status and the error object the API
// answers with. Every error of Register, Publish and Delete is an *Error.
type Error struct {
	Status int
	Body   api.Error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Body.Error)
	for i, f := range e.Body.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if f.Path != "" {
			b.WriteString(f.Path + ": ")
		}
		b.WriteString(f.Reason)
	}
	return b.String()
}

// HTTPStatus is the status the API answers e with.
func (e *Error) HTTPStatus() int { return e.Status }

// ErrorBody is the error object the API answers e with.
func (e *Error) ErrorBody() api.Error { return e.Body }

func errorf(code int, format string, args ...any) *Error {
	return &Error{Status: code, Body: api.Error{Error: fmt.Sprintf(format, args...)}}
}

// storeError maps a store error to the API's answer.
func storeError(id string, err error) *Error {
	var ce *store.ConflictError
	var pe *store.PreconditionError
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ce):
		return errorf(http.StatusConflict, "%s", ce.Error())
	case errors.As(err, &pe):
		return errorf(http.StatusPreconditionFailed, "%s", pe.Error())
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "instance %q is not registered", id)
	case errors.Is(err, store.ErrClosed):
		return errorf(http.StatusServiceUnavailable, "server is shutting down")
	case errors.Is(err, store.ErrNotVisible):
		return errorf(http.StatusServiceUnavailable, "the change is durable but this host does not show it yet: %v", err)
	case isUnavailable(err):
		return storeUnavailable(err)
	default:
		return errorf(http.StatusInternalServerError, "store: %v", err)
	}
}

// checkRegistration validates reg and returns it in canonical form.
func checkRegistration(reg api.Registration) (store.Registration, *Error) {
	var fields []api.FieldError
	out := store.Registration{HostInterface: reg.HostInterface, Labels: reg.Labels}
	if len(reg.Addresses) == 0 && reg.HostInterface == "" {
		return out, &Error{Status: http.StatusBadRequest, Body: api.Error{
			Error:  "invalid registration",
			Fields: []api.FieldError{{Path: "addresses", Reason: "addresses or hostInterface (or both) is required"}},
		}}
	}
	seen := map[netip.Addr]bool{}
	for i, a := range reg.Addresses {
		p, err := netip.ParseAddr(a)
		if err != nil || p.Zone() != "" {
			fields = append(fields, api.FieldError{Path: fmt.Sprintf("addresses[%d]", i), Reason: fmt.Sprintf("must be an IPv4 or IPv6 address without zone (got %q)", a)})
			continue
		}
		p = p.Unmap()
		if p.IsUnspecified() || p.IsMulticast() {
			fields = append(fields, api.FieldError{Path: fmt.Sprintf("addresses[%d]", i), Reason: fmt.Sprintf("must be a unicast address (got %q)", a)})
			continue
		}
		if !seen[p] {
			seen[p] = true
			out.Addresses = append(out.Addresses, p.String())
		}
	}
	if d := reg.HostInterface; d != "" && !validIfaceName(d) {
		fields = append(fields, api.FieldError{Path: "hostInterface", Reason: fmt.Sprintf("must be a network device name of 1-15 characters without '/', ':' or whitespace (got %q)", d)})
	}
	for k := range reg.Labels {
		if k == "" || len(k) > 253 {
			fields = append(fields, api.FieldError{Path: "labels", Reason: "label keys must be 1-253 characters"})
			break
		}
	}
	if len(fields) > 0 {
		return out, &Error{Status: http.StatusBadRequest, Body: api.Error{Error: "invalid registration", Fields: fields}}
	}
	sort.Strings(out.Addresses)
	return out, nil
}

func validIfaceName(d string) bool {
	if len(d) == 0 || len(d) > 15 || d == "." || d == ".." {
		return false
	}
	for _, c := range d {
		if c == '/' || c == ':' || c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// decodeConfig decodes and validates a published document.
func decodeConfig(data []byte) (*config.Document, *Error) {
	if len(data) > config.MaxDocumentBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "config document exceeds %d bytes", config.MaxDocumentBytes)
	}
	doc, err := config.Decode(data)
	if err != nil {
		var ve *config.ValidationError
		switch {
		case errors.Is(err, config.ErrTooLarge):
			return nil, errorf(http.StatusRequestEntityTooLarge, "config document exceeds %d bytes", config.MaxDocumentBytes)
		case errors.As(err, &ve):
			return nil, &Error{Status: http.StatusBadRequest, Body: api.Error{Error: "invalid config", Fields: ve.Fields}}
		default:
			return nil, errorf(http.StatusBadRequest, "invalid config: %v", err)
		}
	}
	return doc, nil
}

func stamper(doc *config.Document) store.Stamper {
	return func(id string, gen int64) ([]byte, error) {
		d := doc.Clone()
		d.InstanceID, d.Generation = id, gen
		return marshal(d)
	}
}

// Register registers or updates instance id (PUT /v1/instances/{id}).
// created is true when id was not registered before.
func (s *Server) Register(ctx context.Context, id string, reg api.Registration) (inst api.Instance, created bool, err error) {
	if !ValidID(id) {
		return inst, false, errorf(http.StatusBadRequest, "invalid instance id %q: must match %s", id, api.InstanceIDPattern)
	}
	r, e := checkRegistration(reg)
	if e != nil {
		return inst, false, e
	}
	rec, created, err := s.apply(ctx, id, store.Change{Register: &r})
	if err != nil {
		return inst, false, err
	}
	return s.view(rec.ID), created, nil
}

// Publish validates data as a config document and publishes it for id
// (PUT /v1/instances/{id}/config). ifMatch, when set, must equal the current
// generation (0: nothing published yet). It returns the new generation once
// it is durable and this server's guests and long-polls see it.
func (s *Server) Publish(ctx context.Context, id string, data []byte, ifMatch *int64) (int64, error) {
	if !ValidID(id) {
		return 0, errorf(http.StatusBadRequest, "invalid instance id %q: must match %s", id, api.InstanceIDPattern)
	}
	doc, e := decodeConfig(data)
	if e != nil {
		s.m.rejects.WithLabelValues("api").Inc()
		return 0, e
	}
	rec, _, err := s.apply(ctx, id, store.Change{Publish: stamper(doc), IfMatch: ifMatch})
	if err != nil {
		return 0, err
	}
	return rec.Generation, nil
}

// apply runs one change through the store; the store's feed has brought it
// into the index when the store returns.
func (s *Server) apply(ctx context.Context, id string, c store.Change) (store.Record, bool, error) {
	if s.closing.Load() {
		return store.Record{}, false, errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	created := s.get(id) == nil
	rec, err := s.st.Apply(ctx, id, c)
	if err != nil {
		return rec, false, storeError(id, err)
	}
	if c.Publish != nil {
		s.m.publishes.Inc()
		s.log.Info("config published", "instance", id, "generation", rec.Generation)
	}
	if c.Register != nil {
		s.log.Info("instance registered", "instance", id, "addresses", rec.Addresses, "hostInterface", rec.HostInterface, "created", created)
		s.srvMu.Lock()
		unserved := s.binder == nil && rec.HostInterface != "" && len(s.guestIfaces) > 0 && !s.guestIfaces[rec.HostInterface]
		s.srvMu.Unlock()
		if unserved {
			s.log.Warn("no guest listener is bound to this host interface (serve --guest-interface); its requests are attributed by source address only", "instance", id, "hostInterface", rec.HostInterface)
		}
	}
	return rec, created, nil
}

// Delete forgets instance id, its config and its status history.
func (s *Server) Delete(ctx context.Context, id string) error {
	if s.closing.Load() {
		return errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.st.Delete(ctx, id); err != nil {
		return storeError(id, err)
	}
	s.log.Info("instance deleted", "instance", id)
	return nil
}

// Instance returns instance id as the admin API shows it.
func (s *Server) Instance(id string) (api.Instance, bool) {
	if s.get(id) == nil {
		return api.Instance{}, false
	}
	return s.view(id), true
}

// Instances returns every instance, sorted by id.
func (s *Server) Instances() []api.Instance {
	s.mu.RLock()
	ids := make([]string, 0, len(s.byID))
	for id := range s.byID {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	sort.Strings(ids)
	out := make([]api.Instance, 0, len(ids))
	for _, id := range ids {
		if s.get(id) != nil {
			out = append(out, s.view(id))
		}
	}
	return out
}

func (s *Server) view(id string) api.Instance {
	inst := s.get(id)
	if inst == nil {
		return api.Instance{ID: id, Addresses: []string{}, Labels: map[string]string{}}
	}
	sn := inst.cur.Load()
	out := api.Instance{
		ID:            id,
		Addresses:     append([]string{}, sn.reg.Addresses...),
		HostInterface: sn.reg.HostInterface,
		Labels:        map[string]string{},
		Generation:    sn.generation,
	}
	for k, v := range sn.reg.Labels {
		out.Labels[k] = v
	}
	inst.statusMu.Lock()
	out.LastStatus = inst.lastStatus
	inst.statusMu.Unlock()
	fi := s.fleet.info(id, sn.generation, out.LastStatus, s.opts.Now())
	if !fi.PublishedAt.IsZero() && sn.generation > 0 {
		out.PublishedAt = &fi.PublishedAt
	}
	if !fi.LastSeen.IsZero() {
		out.LastSeen = &fi.LastSeen
	}
	return out
}

// appendStatus stores a guest's report and wakes admin status waiters.
// r is kept as the instance's last appended report: the caller must not
// change it afterwards.
func (s *Server) appendStatus(ctx context.Context, inst *instance, r *status.Report) error {
	// An agent that crashed after its report was accepted but before it
	// recorded the delivery sends the same report again: same seq, same
	// time. Accept it without storing it twice. (A report with an old seq
	// but another time is kept: an agent whose state was lost counts anew.)
	inst.appendMu.Lock()
	defer inst.appendMu.Unlock()
	inst.statusMu.Lock()
	last := inst.lastStatus
	inst.statusMu.Unlock()
	if sameReport(last, *r) || sameReport(inst.lastAppended, *r) {
		return nil
	}
	if err := s.st.AppendStatus(ctx, inst.id, *r); err != nil {
		return storeError(inst.id, err)
	}
	inst.lastAppended = r
	s.m.report(r.State)
	s.reportReceived(inst.id, last, *r)
	return nil
}

// sameReport says whether r is a resend of last: same seq, time, state
// and event.
func sameReport(last *status.Report, r status.Report) bool {
	return last != nil && last.Seq == r.Seq && last.Time.Equal(r.Time.Time) && last.State == r.State && last.Event == r.Event
}

// observeStatus records r as inst's newest report and wakes admin status
// waiters.
func (inst *instance) observeStatus(r status.Report) {
	inst.statusMu.Lock()
	rc := r
	inst.lastStatus = &rc
	inst.statusMu.Unlock()
	inst.statusWake.fire()
}

// ServeGuest serves the guest API on ln until Shutdown. When hostInterface
// is set, ln is expected to be bound to that host device (see
// guestnet.ListenDevice): every request on it is attributed to the instance
// registered with that hostInterface, falling back to the source address
// when none is. It returns nil after Shutdown.
func (s *Server) ServeGuest(ln net.Listener, hostInterface string) error {
	rl := newRequeueListener(s.sweeper.listener(s.limit(ln, hostInterface, false)))
	return s.serve(s.guestHTTPServer(hostInterface, false, rl), rl, "guest", hostInterface)
}

// limit applies MaxConnsPerSource, MaxGuestConns and MaxUnknownConns to a
// guest listener; byDeviceOnly is as for guestHTTPServer.
func (s *Server) limit(ln net.Listener, hostInterface string, byDeviceOnly bool) net.Listener {
	return s.limiter.Limit(ln, hostInterface, byDeviceOnly)
}

// serveBound serves a listener the binder opened for hostInterface until
// the binder closes the returned server.
func (s *Server) serveBound(ln net.Listener, hostInterface string, byDeviceOnly bool) io.Closer {
	rl := newRequeueListener(s.sweeper.listener(s.limit(ln, hostInterface, byDeviceOnly)))
	hs := s.guestHTTPServer(hostInterface, byDeviceOnly, rl)
	go func() {
		if err := s.serve(hs, rl, "guest", hostInterface); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("guest listener ended", "hostInterface", hostInterface, "err", err)
		}
	}()
	return hs
}

// registeredIfaces lists the host interfaces instances are registered
// with, for the binder.
func (s *Server) registeredIfaces() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Collect(maps.Keys(s.byIface))
}

// DefaultGuestBodyTimeout bounds how long a guest may take to send a
// request body (a status report), measured from the end of its headers.
// It applies only to requests with a body, so long-polls are unaffected.
const DefaultGuestBodyTimeout = 30 * time.Second

// bodyDeadline bounds the time a guest request's body may take to
// arrive (slow POST bodies would otherwise hold a connection and a
// goroutine for ever). Requests without a body, long-polls among them,
// are left alone. net/http lifts the deadline itself once the body has
// been read (to watch for the peer closing), so a slow store does not
// cancel the request.
func bodyDeadline(timeout time.Duration, h http.Handler) http.Handler {
	if timeout <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
		}
		h.ServeHTTP(w, r)
	})
}

// guestHTTPServer is the http.Server of one guest listener. byDeviceOnly
// (for the listeners the binder opens for registered hostInterfaces)
// attributes requests to hostInterface's instance alone, never by source
// address. An answered long-poll's connection goes back to it through rl.
func (s *Server) guestHTTPServer(hostInterface string, byDeviceOnly bool, rl *requeueListener) *http.Server {
	// No ReadHeaderTimeout or IdleTimeout: s.sweeper enforces both
	// without per-request timers (sweep.go).
	hs := &http.Server{
		Handler:        bodyDeadline(s.bodyTimeout, s.guest),
		MaxHeaderBytes: 16 << 10,
		ConnState:      s.sweeper.connState,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.srvMu.Lock()
	s.guestIfaces[hostInterface] = true
	s.srvMu.Unlock()
	dialects := s.opts.Dialects != nil
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if dialects {
			ctx = dialect.ConnContext(ctx, c)
		}
		gc := &guestConn{iface: hostInterface, byDeviceOnly: byDeviceOnly, rl: rl}
		gc.addr, _ = guestnet.SourceAddr(c.RemoteAddr().String())
		// Last, so that a request's lookup of it is the shortest.
		return context.WithValue(ctx, guestConnKey{}, gc)
	}
	return hs
}

// guestConn is what the requests of one guest connection share: where it
// came from, worked out once when it was accepted, and whom its last
// request was attributed to.
type guestConn struct {
	iface        string     // the host interface of its listener, "" for none
	byDeviceOnly bool       // attributed by iface alone (see lookup)
	addr         netip.Addr // its source address (guestnet.SourceAddr)
	rl           *requeueListener
	// last is the instance its last request was attributed to, and the
	// index's version then (Server.indexVer): valid while that version
	// is the current one.
	last atomic.Pointer[connIdentity]
}

type connIdentity struct {
	ver  uint64
	inst *instance
}

// guestConnKey is the context key of a guest connection's *guestConn.
type guestConnKey struct{}

// identifyConn is identify for a request on gc: the instance its last
// request had while the index has not changed since, else a lookup.
func (s *Server) identifyConn(gc *guestConn) *instance {
	if id := gc.last.Load(); id != nil && id.ver == s.indexVer.Load() {
		return id.inst
	}
	s.mu.RLock()
	ver := s.indexVer.Load()
	inst := s.lookupLocked(gc.iface, gc.addr, gc.byDeviceOnly)
	s.mu.RUnlock()
	gc.last.Store(&connIdentity{ver: ver, inst: inst})
	return inst
}

// ServeAdmin serves the admin API on ln until Shutdown. A non-empty token
// requires `Authorization: Bearer <token>` on every request but /healthz
// (use it for TCP; the Unix socket is protected by its file mode).
func (s *Server) ServeAdmin(ln net.Listener, token string) error {
	h := s.admin
	if token != "" {
		h = RequireBearer(token, h)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s.serve(hs, ln, "admin", "")
}

func (s *Server) serve(hs *http.Server, ln net.Listener, kind, iface string) error {
	s.srvMu.Lock()
	if s.closing.Load() {
		s.srvMu.Unlock()
		ln.Close()
		return nil
	}
	s.servers[hs] = struct{}{}
	s.srvMu.Unlock()
	s.log.Info("serving", "api", kind, "addr", ln.Addr().String(), "hostInterface", iface)
	err := hs.Serve(ln)
	s.srvMu.Lock()
	delete(s.servers, hs)
	s.srvMu.Unlock()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve %s API on %s: %w", kind, ln.Addr(), err)
}

// GuestHandler is the guest API. Requests are attributed by r.RemoteAddr,
// or by the host interface when the request's context carries one (as
// ServeGuest's does).
func (s *Server) GuestHandler() http.Handler { return s.guest }

// AdminHandler is the admin API without authentication (wrap it with
// RequireBearer for TCP).
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Done is closed when Shutdown starts.
func (s *Server) Done() <-chan struct{} { return s.shutdown }

// Shutdown answers every parked long-poll (304), stops the publish
// directory watcher and every listener served, waits for their requests
// until ctx ends, then closes the store if New opened it.
func (s *Server) Shutdown(ctx context.Context) error {
	var first bool
	s.shutdownOnce.Do(func() {
		first = true
		s.srvMu.Lock()
		s.closing.Store(true)
		s.srvMu.Unlock()
		close(s.shutdown)
	})
	if !first {
		return nil
	}
	s.log.Info("shutting down")
	drained := s.drainPolls()
	if s.pd != nil {
		s.pd.Stop()
	}
	if s.binder != nil {
		s.binder.Stop()
	}
	s.srvMu.Lock()
	servers := make([]*http.Server, 0, len(s.servers))
	for hs := range s.servers {
		servers = append(servers, hs)
	}
	s.srvMu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, hs := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Shutdown(ctx); err != nil {
				hs.Close()
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case <-drained:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("answering parked long-polls: %w", ctx.Err()))
	}
	if s.peers != nil {
		s.peers.Close()
	}
	// Hold writeMu so no change is half-applied when the store closes, and
	// take it before the feed stops: a handler Shutdown gave up waiting for
	// must not commit a write the index can no longer show.
	s.writeMu.Lock()
	s.stopFeed()
	s.closeStore()
	s.writeMu.Unlock()
	s.log.Info("shut down")
	return errors.Join(errs...)
}

type ifaceKey struct{}

// WithHostInterface returns ctx marking requests as arrived on the host
// device iface; ServeGuest does this for its connections. Tests and custom
// servers may use it in http.Server.ConnContext.
func WithHostInterface(ctx context.Context, iface string) context.Context {
	return context.WithValue(ctx, ifaceKey{}, iface)
}
