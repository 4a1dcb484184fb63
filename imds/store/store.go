// Package store is the durable state of prewarm-imds: the instance registry,
// each instance's current config document with its generation, and each
// instance's status history.
//
// The Store interface is small on purpose so that a replicated backend (etcd)
// can sit behind it later: every method is one atomic transaction, every
// write is durable before it returns, and the store itself enforces the
// invariants another writer could break (an address or host interface owned
// by one instance only, generations that never go back for an id, even after
// Delete and re-registration). The server keeps its own in-memory index for
// the hot path; the store's change feed (Store.Feed) is the only writer of
// that index, for the server's own writes and for changes made anywhere
// else alike.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrNotFound means the instance id is not registered.
	ErrNotFound = errors.New("instance not registered")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrNotVisible means a change is durable but the store's feed did
	// not deliver it in time: a running Feed's caller does not show it
	// yet. The change stays made; a read retried later sees it.
	ErrNotVisible = errors.New("change is durable but not yet delivered by the store's feed")
)

// MaxStatusHistory is how many status reports are kept per instance, at
// most; MaxStatusHistoryBytes bounds their size too.
const MaxStatusHistory = 256

// Registration is what the registry holds about an instance. Addresses are
// in canonical form (netip.Addr.String of an unmapped address); the store
// does not parse them.
type Registration struct {
	Addresses     []string          `json:"addresses,omitempty"`
	HostInterface string            `json:"hostInterface,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
}

// Record is one instance as stored.
type Record struct {
	ID string
	Registration
	// Generation is the generation of Config, 0 while nothing is published.
	Generation int64
	// Config is the stamped document (instanceId and generation set) in its
	// JSON encoding, nil while nothing is published.
	Config []byte
	// LastStatus is the newest status report, nil if none arrived.
	LastStatus *status.Report
}

// Change is one atomic update of an instance: an optional (re-)registration
// and an optional publish. A Change with both applies both or neither.
type Change struct {
	// Register, when set, replaces the instance's registration (creating the
	// instance if needed). Without it the instance must already exist.
	Register *Registration
	// Publish, when set, is stamped with the next generation and becomes the
	// current document.
	Publish Stamper
	// IfMatch, when set, makes the publish conditional: it must equal the
	// current generation (0 = nothing published).
	IfMatch *int64
}

// Stamper produces the stored JSON of a document for the given id and
// generation. The store calls it inside the transaction, once the
// generation is known.
type Stamper func(id string, generation int64) ([]byte, error)

// ConflictError says an address or host interface already belongs to
// another instance.
type ConflictError struct {
	// Kind is "address" or "hostInterface".
	Kind  string
	Value string
	Owner string
}

func (e *ConflictError) Error() string {
	if e.Kind == "hostInterface" {
		return fmt.Sprintf("host interface %q belongs to instance %q", e.Value, e.Owner)
	}
	return fmt.Sprintf("address %s belongs to instance %q", e.Value, e.Owner)
}

// PreconditionError says an If-Match did not match the current generation.
type PreconditionError struct {
	Want, Current int64
}

func (e *PreconditionError) Error() string {
	return fmt.Sprintf("If-Match \"%d\" does not match the current generation \"%d\"", e.Want, e.Current)
}

// EventType says what an Event of a store's feed carries.
type EventType int

// Event types.
const (
	// EventResync replaces everything known: Records are every instance
	// this store serves here. It comes first, and again whenever the feed
	// lost track of the changes in between.
	EventResync EventType = iota + 1
	// EventChanged: Record is the new state of instance ID (registration,
	// config, last status).
	EventChanged
	// EventDeleted: instance ID is no longer served here (deleted, or
	// handed over to another host of a shared store).
	EventDeleted
	// EventStatus: instance ID reported Status, now its last status.
	EventStatus
	// EventHealth: a shared store became unreachable (Err says why) or
	// reachable again (Err nil).
	EventHealth
)

func (t EventType) String() string {
	switch t {
	case EventResync:
		return "resync"
	case EventChanged:
		return "changed"
	case EventDeleted:
		return "deleted"
	case EventStatus:
		return "status"
	case EventHealth:
		return "health"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change of a store's feed.
type Event struct {
	Type EventType
	// ID is the instance of EventChanged, EventDeleted and EventStatus.
	ID      string
	Record  Record
	Records []Record
	Status  *status.Report
	Err     error
}

// Store is the durable state behind prewarm-imds. Implementations are safe
// for concurrent use; each method is atomic and durable when it returns nil.
type Store interface {
	// Feed calls fn with every change of the instances this store serves
	// here, in the order the store made them, until ctx ends; it returns
	// ctx's error (or why the feed could not start). The first event is
	// an EventResync of the current state. fn is called by one goroutine
	// at a time and must not call the store's mutating methods.
	//
	// While a Feed runs, Apply, Delete and AppendStatus return only once
	// fn has returned for their change (or fail with ErrNotVisible when
	// the feed does not deliver it within the store's request bound), so
	// that a caller keeping an index fed by fn reads its own writes.
	Feed(ctx context.Context, fn func(Event)) error
	// Load returns every registered instance.
	Load(ctx context.Context) ([]Record, error)
	// Apply applies c to instance id and returns the resulting record. It
	// returns ErrNotFound (no Register and id unknown), *ConflictError or
	// *PreconditionError without changing anything.
	Apply(ctx context.Context, id string, c Change) (Record, error)
	// Delete forgets instance id, its config and status history. The
	// generation counter of id is kept so a generation is never reused.
	Delete(ctx context.Context, id string) error
	// AppendStatus adds a report to id's history, keeping the newest
	// within MaxStatusHistory reports and MaxStatusHistoryBytes bytes (the
	// newest always), and makes it id's last status.
	AppendStatus(ctx context.Context, id string, r status.Report) error
	// StatusHistory returns id's reports, oldest first.
	StatusHistory(ctx context.Context, id string) ([]status.Report, error)
	// Epoch identifies this store: 16 lowercase hex digits, random, made
	// when the store is created and kept across restarts (and by a backup
	// restored), so that a guest can tell a generation of this store from
	// the same number of another, reset one. "" while not yet known (a
	// shared store not reached yet).
	Epoch() string
	// RaiseGeneration makes id's next publish take a generation above
	// floor (it never lowers the counter). The server calls it when a
	// guest shows it has seen a higher generation of this store than the
	// current one: an older backup was restored. ErrNotFound for an
	// unregistered id.
	RaiseGeneration(ctx context.Context, id string, floor int64) error
	// Close releases the store.
	Close() error
}

// NewEpoch returns a new random store epoch: api.EpochLen lowercase hex
// digits.
func NewEpoch() string {
	var b [api.EpochLen / 2]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidEpoch reports whether e has the form of an epoch (the contract's
// rule, api.ValidEpoch).
func ValidEpoch(e string) bool { return api.ValidEpoch(e) }
