// Package etcdstore is the etcd backend of prewarm-imds's store: a fleet of
// hosts shares one registry, one config document and one generation counter
// per instance, and one status history, through an etcd cluster.
//
// Every mutation is one etcd transaction that compares the mod revisions of
// every key it read, so two publishers on two hosts can never both win with
// the same generation: the loser re-reads and retries (bounded). The key
// layout is documented in docs/etcd.md so that a control plane can write to
// etcd directly.
//
// Each Store belongs to one host (Config.HostID). Registering through it
// places the instance on that host; Load returns the instances placed on
// it; Follow streams the changes of those instances (the host's own
// directory of keys, so a host's traffic does not grow with the fleet),
// made through any host or by a control plane; Watch streams the whole
// fleet's, for tools.
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/status"
)

// DefaultPrefix is the key prefix when Config.Prefix is empty.
const DefaultPrefix = "/prewarm/"

// Defaults of Config's durations.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultHealthInterval = 2 * time.Second
)

// maxAttempts bounds the optimistic retries of one mutation under
// contention.
const maxAttempts = 100

// ErrUnavailable means etcd could not be reached or had no quorum; the
// mutation may or may not have been applied only when the error came back
// from a transaction already sent (the read-only path never changes
// anything).
var ErrUnavailable = errors.New("etcd unavailable")

// UnavailableError wraps the etcd client error of an operation that failed
// because etcd was unreachable, had no leader or timed out. It matches
// ErrUnavailable with errors.Is, and callers that must not import this
// package can test for the Unavailable method.
type UnavailableError struct {
	Op  string
	Err error

	sent bool // a transaction was sent: it may have been applied
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s: etcd unavailable: %v", e.Op, e.Err)
}

// Unwrap returns the client error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unavailable reports true; it lets a caller branch on the error through an
// interface without importing etcdstore.
func (e *UnavailableError) Unavailable() bool { return true }

// Config configures a Store.
type Config struct {
	// Endpoints are the etcd client URLs (http:// or https://).
	Endpoints []string
	// Prefix is the key prefix of the layout; DefaultPrefix when empty. A
	// missing trailing slash is added.
	Prefix string
	// HostID names this host; instances registered through this Store are
	// placed on it. It must match store IDs' pattern
	// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$.
	HostID string

	// CertFile and KeyFile are a TLS client certificate; CAFile verifies
	// the servers (system roots when empty). Any of them turns TLS on.
	CertFile, KeyFile, CAFile string
	// Username and PasswordFile authenticate with etcd's auth; the
	// password is read from the file (trailing newline trimmed) so that it
	// never appears in a command line.
	Username, PasswordFile string

	// DialTimeout bounds the first connection; DefaultDialTimeout if zero.
	DialTimeout time.Duration
	// RequestTimeout bounds each etcd request; DefaultRequestTimeout if
	// zero.
	RequestTimeout time.Duration
	// HealthInterval is how often Follow probes etcd to notice its loss
	// (a watch alone waits silently); DefaultHealthInterval if zero.
	HealthInterval time.Duration

	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
}

// Store is the etcd Store. It implements store.Store.
type Store struct {
	cli    *clientv3.Client
	prefix string
	host   string
	reqTO  time.Duration
	health time.Duration
	log    *slog.Logger

	closed   atomic.Bool
	degraded atomic.Bool
	epoch    atomic.Pointer[string] // nil until first read (ensureEpoch)

	// Following state: Apply, Delete and AppendStatus wait until the
	// follower has delivered their revision, so that a caller that feeds
	// an index from Follow reads its own writes.
	fmu       sync.Mutex
	followers int
	delivered int64
	wake      chan struct{}
}

var _ store.Store = (*Store)(nil)

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Open connects to etcd. It does not wait for etcd to be reachable: the
// first request does (and fails with ErrUnavailable after the timeouts).
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints")
	}
	if !idRE.MatchString(cfg.HostID) {
		return nil, fmt.Errorf("etcd store: host id %q must match %s", cfg.HostID, idRE)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ccfg := clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
		Username:             cfg.Username,
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" || cfg.CAFile != "" {
		tc, err := tlsConfig(cfg.CertFile, cfg.KeyFile, cfg.CAFile)
		if err != nil {
			return nil, err
		}
		ccfg.TLS = tc
	}
	if cfg.PasswordFile != "" {
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("etcd store: read password file: %w", err)
		}
		ccfg.Password = strings.TrimRight(string(b), "\r\n")
		if cfg.Username == "" {
			return nil, errors.New("etcd store: a password file needs a user name")
		}
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("etcd store: connect %v: %w", cfg.Endpoints, err)
	}
	return &Store{
		cli:    cli,
		prefix: prefix,
		host:   cfg.HostID,
		reqTO:  cfg.RequestTimeout,
		health: cfg.HealthInterval,
		log:    log,
		wake:   make(chan struct{}),
	}, nil
}

func tlsConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("etcd store: a client certificate needs both a cert and a key file")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd store: load client certificate %s: %w", certFile, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("etcd store: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd store: CA file %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// HostID returns the host this Store places instances on.
func (s *Store) HostID() string { return s.host }

// Prefix returns the key prefix, with its trailing slash.
func (s *Store) Prefix() string { return s.prefix }

// Client returns the etcd client, for tests and tools.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Degraded reports whether the last probe of a running Follow failed.
func (s *Store) Degraded() bool { return s.degraded.Load() }

// Close implements store.Store.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd store: %w", err)
	}
	return nil
}

// Keys of the layout (docs/etcd.md). What a host serves lives under its
// own hosts/<host>/ directory, so that each host watches only its own
// instances; what must be looked up by instance id alone (placement,
// generation counter, ownership indexes, status) is global.
func (s *Store) kPlace(id string) string { return s.prefix + "placement/" + id }
func (s *Store) hostDir(host string) string {
	return s.prefix + "hosts/" + host + "/"
}
func (s *Store) kReg(host, id string) string { return s.hostDir(host) + "registrations/" + id }
func (s *Store) kCfg(host, id string) string { return s.hostDir(host) + "configs/" + id }

// kHostLast is the serving host's copy of laststatus/<id>, so that the
// host's Follow sees its instances' reports.
func (s *Store) kHostLast(host, id string) string { return s.hostDir(host) + "laststatus/" + id }
func (s *Store) kGen(id string) string            { return s.prefix + "generations/" + id }
func (s *Store) kLast(id string) string           { return s.prefix + "laststatus/" + id }
func (s *Store) kSeq(id string) string            { return s.prefix + "statusseq/" + id }
func (s *Store) kStatusBytes(id string) string    { return s.prefix + "statusbytes/" + id }
func (s *Store) kMark(id string) string           { return s.prefix + "writemarks/" + id }
func (s *Store) kStatusDir(id string) string {
	return s.prefix + "status/" + id + "/"
}
func (s *Store) kStatus(id string, n int64) string {
	return fmt.Sprintf("%s%020d", s.kStatusDir(id), n)
}
func (s *Store) kAddr(a string) string          { return s.prefix + "addresses/" + a }
func (s *Store) kEpoch() string                 { return s.prefix + "epoch" }
func (s *Store) kIface(host, dev string) string { return s.prefix + "interfaces/" + host + "/" + dev }

// Instance is one instance as the fleet sees it.
type Instance struct {
	store.Record
	// HostID is the host the instance is placed on.
	HostID string
	// Local is true when HostID is this Store's host.
	Local bool
}

// op wraps an etcd client error: the caller's own cancellation stays
// itself, everything else is unavailability.
func (s *Store) op(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	return &UnavailableError{Op: op, Err: err}
}

func (s *Store) check(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if s.degraded.Load() {
		return &UnavailableError{Op: op, Err: errors.New("etcd probe failing; serving read-only")}
	}
	return nil
}

// get reads keys in one transaction (one revision). It returns each key's
// value (nil when absent) and mod revision (0 when absent).
func (s *Store) get(ctx context.Context, op string, keys ...string) (vals [][]byte, revs []int64, rev int64, err error) {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	rctx, cancel := context.WithTimeout(ctx, s.reqTO)
	defer cancel()
	resp, err := s.cli.Txn(rctx).Then(ops...).Commit()
	if err != nil {
		return nil, nil, 0, s.op(ctx, op, err)
	}
	vals, revs = make([][]byte, len(keys)), make([]int64, len(keys))
	for i, r := range resp.Responses {
		if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
			vals[i], revs[i] = kvs[0].Value, kvs[0].ModRevision
		}
	}
	return vals, revs, resp.Header.Revision, nil
}

// commit runs a compare-and-swap transaction. ok is false when a compare
// failed (someone else wrote in between): the caller re-reads and retries.
func (s *Store) commit(ctx context.Context, op string, cmps []clientv3.Cmp, ops []clientv3.Op) (ok bool, rev int64, err error) {
	rctx, cancel := context.WithTimeout(ctx, s.reqTO)
	defer cancel()
	resp, err := s.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		err = s.op(ctx, op, err)
		if ue, ok := err.(*UnavailableError); ok {
			ue.sent = true
		}
		return false, 0, err
	}
	return resp.Succeeded, resp.Header.Revision, nil
}

// backoff waits before retry attempt n: exponential from 1 ms, capped at
// 100 ms, with full jitter.
func backoff(ctx context.Context, n int) error {
	d := time.Millisecond << min(n, 7)
	d = min(d, 100*time.Millisecond)
	t := time.NewTimer(rand.N(d) + time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retry runs try until it commits, fails for good, or maxAttempts pass.
// A conflict (ok false) re-reads at once after a short backoff. An
// unavailable etcd (a member down, a leader election) is retried for up to
// two request timeouts; uncertain is true on the attempts after a
// transaction that was sent but not answered, so that try can first check
// whether it landed and not apply the change twice.
func (s *Store) retry(ctx context.Context, op string, try func(uncertain bool) (bool, int64, error)) error {
	deadline := time.Now().Add(2 * s.reqTO)
	uncertain := false
	for n := range maxAttempts {
		ok, rev, err := try(uncertain)
		if err != nil {
			var ue *UnavailableError
			if !errors.As(err, &ue) || s.closed.Load() || time.Now().After(deadline) {
				return err
			}
			if ue.sent {
				uncertain = true
			}
			s.log.Debug("retrying", "op", op, "err", err)
		} else if ok {
			if err := s.await(ctx, rev); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			return nil
		}
		if err := backoff(ctx, n); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return &UnavailableError{Op: op, Err: fmt.Errorf("still conflicting after %d attempts", maxAttempts)}
}

func docGeneration(doc []byte) (int64, error) {
	if doc == nil {
		return 0, nil
	}
	var g struct {
		Generation int64 `json:"generation"`
	}
	if err := json.Unmarshal(doc, &g); err != nil {
		return 0, err
	}
	return g.Generation, nil
}

func parseInt(b []byte) int64 {
	if b == nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// Apply implements store.Store. Registering places the instance on this
// Store's host (taking it over from another host if needed, with its
// config); a publish takes the next generation of the instance's counter,
// wherever the instance is placed.
func (s *Store) Apply(ctx context.Context, id string, c store.Change) (store.Record, error) {
	op := fmt.Sprintf("apply %q", id)
	if err := s.check(op); err != nil {
		return store.Record{}, err
	}
	var rec store.Record
	var tried []string // write marks of the attempts whose outcome is unknown
	err := s.retry(ctx, op, func(uncertain bool) (bool, int64, error) {
		if !uncertain {
			tried = tried[:0]
		}
		var ok bool
		var rev int64
		var mark string
		var err error
		rec, ok, rev, mark, err = s.tryApply(ctx, op, id, c, tried)
		tried = append(tried, mark)
		return ok, rev, err
	})
	return rec, err
}

// newMark returns a value unique to one write attempt.
func (s *Store) newMark() string {
	return fmt.Sprintf("%s/%016x%016x", s.host, rand.Uint64(), rand.Uint64())
}

func decodeReg(b []byte) (*store.Registration, error) {
	if b == nil {
		return nil, nil
	}
	var r store.Registration
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// indexKeys are the ownership index keys of reg placed on host.
func (s *Store) indexKeys(host string, reg *store.Registration) []string {
	if reg == nil {
		return nil
	}
	var out []string
	for _, a := range reg.Addresses {
		out = append(out, s.kAddr(a))
	}
	if reg.HostInterface != "" {
		out = append(out, s.kIface(host, reg.HostInterface))
	}
	return out
}

// tryApply makes one attempt at c with a fresh write mark. tried holds
// the marks of earlier attempts whose outcome is unknown: finding one of
// them on the instance means that attempt landed and the change is done.
// Every key read is compared by mod revision in the transaction, so an
// attempt that raced with another writer changes nothing (ok false).
func (s *Store) tryApply(ctx context.Context, op, id string, c store.Change, tried []string) (store.Record, bool, int64, string, error) {
	rec := store.Record{ID: id}
	mark := s.newMark()
	fail := func(err error) (store.Record, bool, int64, string, error) { return rec, false, 0, mark, err }

	// Where the instance is now, its counter, last status and write mark.
	v1, r1, _, err := s.get(ctx, op, s.kPlace(id), s.kGen(id), s.kLast(id), s.kMark(id))
	if err != nil {
		return fail(err)
	}
	oldHost := string(v1[0])
	if oldHost == "" && c.Register == nil {
		return fail(store.ErrNotFound)
	}
	newHost := oldHost
	if c.Register != nil {
		newHost = s.host
	}
	// Its registration and config there, and the index keys it will own.
	var keys2 []string
	if oldHost != "" {
		keys2 = append(keys2, s.kReg(oldHost, id), s.kCfg(oldHost, id))
	}
	newIdx := s.indexKeys(newHost, c.Register)
	v2, r2, _, err := s.get(ctx, op, append(keys2, newIdx...)...)
	if err != nil {
		return fail(err)
	}
	var cur *store.Registration
	var curCfg []byte
	if oldHost != "" {
		if cur, err = decodeReg(v2[0]); err != nil {
			return fail(fmt.Errorf("%s: decode registration: %w", op, err))
		}
		if cur == nil && c.Register == nil {
			return fail(store.ErrNotFound) // placement without registration
		}
		curCfg = v2[1]
	}
	curGen, err := docGeneration(curCfg)
	if err != nil {
		return fail(fmt.Errorf("%s: decode config: %w", op, err))
	}
	// Only a change to this host's directory comes back through its
	// Follow; the others have nothing to wait for (revision 0).
	mine := func(rev int64) int64 {
		if oldHost == s.host || newHost == s.host {
			return rev
		}
		return 0
	}
	if v1[3] != nil && cur != nil && slices.Contains(tried, string(v1[3])) {
		// An earlier attempt landed although its answer was lost.
		rec.Registration, rec.Config, rec.Generation = *cur, curCfg, curGen
		return rec, true, mine(r1[3]), mark, nil
	}

	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(s.kPlace(id)), "=", r1[0]),
		clientv3.Compare(clientv3.ModRevision(s.kGen(id)), "=", r1[1]),
	}
	for i, k := range keys2 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", r2[i]))
	}
	// Deletes go first: a watcher that applies the events in order sees
	// a handover end on the new host.
	var dels, puts []clientv3.Op
	if c.Register != nil {
		for i, k := range newIdx {
			v := v2[len(keys2)+i]
			if v != nil && string(v) != id {
				kind, val := "address", strings.TrimPrefix(k, s.prefix+"addresses/")
				if strings.HasPrefix(k, s.prefix+"interfaces/") {
					kind, val = "hostInterface", c.Register.HostInterface
				}
				return fail(&store.ConflictError{Kind: kind, Value: val, Owner: string(v)})
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", r2[len(keys2)+i]))
			puts = append(puts, clientv3.OpPut(k, id))
		}
		// Release the index keys the new registration drops, but only
		// those still pointing at id.
		old := slices.DeleteFunc(s.indexKeys(oldHost, cur), func(k string) bool { return slices.Contains(newIdx, k) })
		if len(old) > 0 {
			ov, or, _, err := s.get(ctx, op, old...)
			if err != nil {
				return fail(err)
			}
			for i, k := range old {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", or[i]))
				if string(ov[i]) == id {
					dels = append(dels, clientv3.OpDelete(k))
				}
			}
		}
		if oldHost != newHost {
			if oldHost != "" {
				// Handover: the config and last status move with the
				// instance.
				dels = append(dels, clientv3.OpDelete(s.kReg(oldHost, id)), clientv3.OpDelete(s.kCfg(oldHost, id)), clientv3.OpDelete(s.kHostLast(oldHost, id)))
				if curCfg != nil && c.Publish == nil {
					puts = append(puts, clientv3.OpPut(s.kCfg(newHost, id), string(curCfg)))
				}
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.kLast(id)), "=", r1[2]))
				if v1[2] != nil {
					puts = append(puts, clientv3.OpPut(s.kHostLast(newHost, id), string(v1[2])))
				}
			}
			puts = append(puts, clientv3.OpPut(s.kPlace(id), newHost))
		}
		b, err := json.Marshal(c.Register)
		if err != nil {
			return fail(fmt.Errorf("%s: encode registration: %w", op, err))
		}
		puts = append(puts, clientv3.OpPut(s.kReg(newHost, id), string(b)))
		rec.Registration = *c.Register
	} else {
		rec.Registration = *cur
	}
	rec.Config, rec.Generation = curCfg, curGen
	if c.Publish != nil {
		if c.IfMatch != nil && *c.IfMatch != curGen {
			return fail(&store.PreconditionError{Want: *c.IfMatch, Current: curGen})
		}
		// A control plane that wrote a config without bumping the counter
		// still never gets its generation reused.
		next := max(parseInt(v1[1]), curGen) + 1
		doc, err := c.Publish(id, next)
		if err != nil {
			return fail(err)
		}
		puts = append(puts,
			clientv3.OpPut(s.kGen(id), strconv.FormatInt(next, 10)),
			clientv3.OpPut(s.kCfg(newHost, id), string(doc)))
		rec.Config, rec.Generation = doc, next
	}
	if v1[2] != nil {
		var r status.Report
		if err := json.Unmarshal(v1[2], &r); err == nil {
			rec.LastStatus = &r
		}
	}
	puts = append(puts, clientv3.OpPut(s.kMark(id), mark))
	ok, rev, err := s.commit(ctx, op, cmps, append(dels, puts...))
	return rec, ok, mine(rev), mark, err
}

// Delete implements store.Store. The generation counter stays.
func (s *Store) Delete(ctx context.Context, id string) error {
	op := fmt.Sprintf("delete %q", id)
	if err := s.check(op); err != nil {
		return err
	}
	return s.retry(ctx, op, func(uncertain bool) (bool, int64, error) {
		v1, r1, _, err := s.get(ctx, op, s.kPlace(id), s.kGen(id))
		if err != nil {
			return false, 0, err
		}
		host := string(v1[0])
		if host == "" {
			if uncertain {
				// The earlier attempt whose answer was lost did it.
				return true, 0, nil
			}
			return false, 0, store.ErrNotFound
		}
		v2, r2, _, err := s.get(ctx, op, s.kReg(host, id), s.kCfg(host, id))
		if err != nil {
			return false, 0, err
		}
		cur, err := decodeReg(v2[0])
		if err != nil {
			return false, 0, fmt.Errorf("%s: decode registration: %w", op, err)
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(s.kPlace(id)), "=", r1[0]),
			clientv3.Compare(clientv3.ModRevision(s.kGen(id)), "=", r1[1]),
			clientv3.Compare(clientv3.ModRevision(s.kReg(host, id)), "=", r2[0]),
			clientv3.Compare(clientv3.ModRevision(s.kCfg(host, id)), "=", r2[1]),
		}
		ops := []clientv3.Op{
			clientv3.OpDelete(s.kPlace(id)),
			clientv3.OpDelete(s.kReg(host, id)),
			clientv3.OpDelete(s.kCfg(host, id)),
			clientv3.OpDelete(s.kHostLast(host, id)),
			clientv3.OpDelete(s.kLast(id)),
			clientv3.OpDelete(s.kSeq(id)),
			clientv3.OpDelete(s.kStatusBytes(id)),
			clientv3.OpDelete(s.kMark(id)),
			clientv3.OpDelete(s.kStatusDir(id), clientv3.WithPrefix()),
		}
		if g, err := docGeneration(v2[1]); err == nil && g > parseInt(v1[1]) {
			ops = append(ops, clientv3.OpPut(s.kGen(id), strconv.FormatInt(g, 10)))
		}
		if idx := s.indexKeys(host, cur); len(idx) > 0 {
			iv, ir, _, err := s.get(ctx, op, idx...)
			if err != nil {
				return false, 0, err
			}
			for i, k := range idx {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", ir[i]))
				if string(iv[i]) == id {
					ops = append(ops, clientv3.OpDelete(k))
				}
			}
		}
		ok, rev, err := s.commit(ctx, op, cmps, ops)
		if host != s.host {
			rev = 0 // not in this host's directory: nothing to wait for
		}
		return ok, rev, err
	})
}

// AppendStatus implements store.Store: the report becomes status number
// statusseq+1 and the instance's last status; in the same transaction the
// oldest reports past store.MaxStatusHistory or store.MaxStatusHistoryBytes
// are deleted (the newest always stays), and statusbytes records what the
// history then holds, so that an append reads only the reports it drops.
func (s *Store) AppendStatus(ctx context.Context, id string, r status.Report) error {
	op := fmt.Sprintf("append status of %q", id)
	if err := s.check(op); err != nil {
		return err
	}
	data, err := store.EncodeReport(r)
	if err != nil {
		return fmt.Errorf("%s: encode: %w", op, err)
	}
	return s.retry(ctx, op, func(uncertain bool) (bool, int64, error) {
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		resp, err := s.cli.Txn(rctx).Then(
			clientv3.OpGet(s.kPlace(id)), clientv3.OpGet(s.kSeq(id)), clientv3.OpGet(s.kLast(id)),
			clientv3.OpGet(s.kStatusBytes(id)),
			clientv3.OpGet(s.kStatusDir(id), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		).Commit()
		cancel()
		if err != nil {
			return false, 0, s.op(ctx, op, err)
		}
		place := resp.Responses[0].GetResponseRange().GetKvs()
		if len(place) == 0 {
			return false, 0, store.ErrNotFound
		}
		if last := resp.Responses[2].GetResponseRange().GetKvs(); uncertain && len(last) > 0 && string(last[0].Value) == string(data) {
			// The earlier attempt whose answer was lost landed (a report
			// carries its seq and time, so equal bytes are this one): its
			// revision is the last status's, awaited like any write.
			return true, last[0].ModRevision, nil
		}
		var seq, seqRev int64
		if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
			seq, seqRev = parseInt(kvs[0].Value), kvs[0].ModRevision
		}
		count := resp.Responses[4].GetResponseRange().GetCount()
		var size, sizeRev int64
		if kvs := resp.Responses[3].GetResponseRange().GetKvs(); len(kvs) > 0 {
			size, sizeRev = parseInt(kvs[0].Value), kvs[0].ModRevision
		} else if count > 0 {
			// A history written before statusbytes existed, or by a
			// control plane that does not keep it: size it once.
			if size, err = s.historySize(ctx, op, id, resp.Header.Revision); err != nil {
				return false, 0, err
			}
		}
		count, size = count+1, size+int64(len(data))
		drop, size, err := s.statusDrop(ctx, op, id, resp.Header.Revision, count, size)
		if err != nil {
			return false, 0, err
		}
		n := seq + 1
		host := string(place[0].Value)
		cmps := []clientv3.Cmp{
			// Same placement (not deleted, re-registered or handed over
			// in between); publishes do not conflict.
			clientv3.Compare(clientv3.ModRevision(s.kPlace(id)), "=", place[0].ModRevision),
			clientv3.Compare(clientv3.ModRevision(s.kSeq(id)), "=", seqRev),
			clientv3.Compare(clientv3.ModRevision(s.kStatusBytes(id)), "=", sizeRev),
		}
		ops := []clientv3.Op{
			clientv3.OpPut(s.kStatus(id, n), string(data)),
			clientv3.OpPut(s.kSeq(id), strconv.FormatInt(n, 10)),
			clientv3.OpPut(s.kStatusBytes(id), strconv.FormatInt(size, 10)),
			clientv3.OpPut(s.kLast(id), string(data)),
			clientv3.OpPut(s.kHostLast(host, id), string(data)),
		}
		if drop != "" {
			// Everything up to the newest dropped key.
			ops = append(ops, clientv3.OpDelete(s.kStatusDir(id), clientv3.WithRange(drop+"\x00")))
		}
		ok, rev, err := s.commit(ctx, op, cmps, ops)
		if host != s.host {
			rev = 0 // not in this host's directory: nothing to wait for
		}
		return ok, rev, err
	})
}

// statusDrop decides which of id's oldest reports an append drops: the
// history, with the new report, holds count reports of size bytes. It
// reads (at revision rev) only the reports it drops, and returns the key
// of the newest of them ("" for none) and the size that then remains.
func (s *Store) statusDrop(ctx context.Context, op, id string, rev, count, size int64) (string, int64, error) {
	over := func() bool {
		return count > 1 && (count > store.MaxStatusHistory || size > store.MaxStatusHistoryBytes)
	}
	drop, from := "", s.kStatusDir(id)
	end := clientv3.GetPrefixRangeEnd(from)
	for over() {
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		resp, err := s.cli.Get(rctx, from, clientv3.WithRange(end), clientv3.WithRev(rev),
			clientv3.WithLimit(max(count-store.MaxStatusHistory, 2)))
		cancel()
		if err != nil {
			return "", 0, s.op(ctx, op, err)
		}
		if len(resp.Kvs) == 0 {
			break // count said more: changed under us, the commit will fail
		}
		for _, kv := range resp.Kvs {
			if !over() {
				break
			}
			drop = string(kv.Key)
			count, size = count-1, size-int64(len(kv.Value))
		}
		from = drop + "\x00"
	}
	return drop, size, nil
}

// historySize reads id's history at revision rev and returns its size.
func (s *Store) historySize(ctx context.Context, op, id string, rev int64) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, s.reqTO)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.kStatusDir(id), clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return 0, s.op(ctx, op, err)
	}
	var n int64
	for _, kv := range resp.Kvs {
		n += int64(len(kv.Value))
	}
	return n, nil
}

// StatusHistory implements store.Store. It keeps to the history's bounds
// even where etcd holds more (a control plane's own reports, or a history
// written before the byte budget).
func (s *Store) StatusHistory(ctx context.Context, id string) ([]status.Report, error) {
	op := fmt.Sprintf("status history of %q", id)
	if s.closed.Load() {
		return nil, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	rctx, cancel := context.WithTimeout(ctx, s.reqTO)
	defer cancel()
	resp, err := s.cli.Txn(rctx).Then(
		clientv3.OpGet(s.kPlace(id), clientv3.WithCountOnly()),
		clientv3.OpGet(s.kStatusDir(id), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
	).Commit()
	if err != nil {
		return nil, s.op(ctx, op, err)
	}
	if resp.Responses[0].GetResponseRange().GetCount() == 0 {
		return nil, store.ErrNotFound
	}
	kvs := resp.Responses[1].GetResponseRange().GetKvs()
	first := len(kvs)
	var budget store.HistoryBudget
	for first > 0 && budget.Keep(len(kvs[first-1].Value)) {
		first--
	}
	out := make([]status.Report, 0, len(kvs)-first)
	for _, kv := range kvs[first:] {
		var r status.Report
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("%s: decode %s: %w", op, kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Epoch implements store.Store: the cluster's epoch as last read (every
// load and resync reads it, creating it if absent), "" before the first.
func (s *Store) Epoch() string {
	if e := s.epoch.Load(); e != nil {
		return *e
	}
	return ""
}

// ensureEpoch reads the epoch key, creating it with a new epoch if it is
// absent (a new or wiped cluster), and caches it. Every host of the
// cluster shares the one key, so they all put the same epoch in their
// ETags.
func (s *Store) ensureEpoch(ctx context.Context) error {
	op := "read store epoch"
	k := s.kEpoch()
	rctx, cancel := context.WithTimeout(ctx, s.reqTO)
	defer cancel()
	resp, err := s.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, store.NewEpoch()), clientv3.OpGet(k)).
		Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return s.op(ctx, op, err)
	}
	get := resp.Responses[len(resp.Responses)-1].GetResponseRange().GetKvs()
	if len(get) == 0 {
		return fmt.Errorf("%s: key %s vanished", op, k)
	}
	e := string(get[0].Value)
	if !store.ValidEpoch(e) {
		return fmt.Errorf("%s: key %s holds %q: want 16 lowercase hex digits (delete it to have a new one made)", op, k, e)
	}
	if old := s.epoch.Swap(&e); old != nil && *old != e {
		s.log.Warn("store epoch changed: etcd was reset or restored; agents re-read their documents", "old", *old, "new", e)
	}
	return nil
}

// RaiseGeneration implements store.Store.
func (s *Store) RaiseGeneration(ctx context.Context, id string, floor int64) error {
	op := fmt.Sprintf("raise generation of %q", id)
	if err := s.check(op); err != nil {
		return err
	}
	return s.retry(ctx, op, func(bool) (bool, int64, error) {
		v, r, _, err := s.get(ctx, op, s.kPlace(id), s.kGen(id))
		if err != nil {
			return false, 0, err
		}
		if v[0] == nil {
			return false, 0, store.ErrNotFound
		}
		if parseInt(v[1]) >= floor {
			return true, 0, nil
		}
		ok, _, err := s.commit(ctx, op,
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.kGen(id)), "=", r[1])},
			[]clientv3.Op{clientv3.OpPut(s.kGen(id), strconv.FormatInt(floor, 10))})
		return ok, 0, err // a global key: nothing for the follower to deliver
	})
}

// Load implements store.Store: the instances placed on this host.
func (s *Store) Load(ctx context.Context) ([]store.Record, error) {
	m, _, err := s.snapshot(ctx, 0, true)
	if err != nil {
		return nil, err
	}
	var out []store.Record
	for _, in := range m.instances(s.host) {
		out = append(out, in.Record)
	}
	return out, nil
}

// Snapshot reads every instance of the fleet at one revision: rev when it
// is positive (an etcd error wrapping rpctypes.ErrCompacted if it is
// compacted), else the current one, which it returns.
func (s *Store) Snapshot(ctx context.Context, rev int64) ([]Instance, int64, error) {
	m, rev, err := s.snapshot(ctx, rev, false)
	if err != nil {
		return nil, 0, err
	}
	return m.instances(s.host), rev, nil
}

// snapshot reads the fleet's state (or, with local, this host's) at rev
// (the current revision when rev is 0).
func (s *Store) snapshot(ctx context.Context, rev int64, local bool) (*mirror, int64, error) {
	op := "load store"
	if s.closed.Load() {
		return nil, 0, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if err := s.ensureEpoch(ctx); err != nil {
		return nil, 0, err
	}
	if rev <= 0 {
		// Learn the current revision; the ranges then read at it.
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		resp, err := s.cli.Get(rctx, s.kPlace(""), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			return nil, 0, s.op(ctx, op, err)
		}
		rev = resp.Header.Revision
	}
	m := newMirror()
	getAt := func(key string, opts ...clientv3.OpOption) error {
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		defer cancel()
		resp, err := s.cli.Get(rctx, key, append(opts, clientv3.WithRev(rev))...)
		if err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("%s at revision %d: %w", op, rev, err)
			}
			return s.op(ctx, op, err)
		}
		for _, kv := range resp.Kvs {
			m.put(s, string(kv.Key), kv.Value)
		}
		return nil
	}
	if !local {
		for _, dir := range []string{s.prefix + "hosts/", s.prefix + "laststatus/"} {
			if err := getAt(dir, clientv3.WithPrefix()); err != nil {
				return nil, 0, err
			}
		}
		return m, rev, nil
	}
	if err := getAt(s.hostDir(s.host), clientv3.WithPrefix()); err != nil {
		return nil, 0, err
	}
	return m, rev, nil
}

// await blocks until a running Follow has delivered revision rev (of a
// write to this host's directory; 0 means nothing to wait for), so that a
// caller feeding its index from Follow sees its own write when the call
// returns. When the follower has not delivered it within the request
// timeout, or ctx ends first, it returns an error matching
// store.ErrNotVisible: the write is durable but the caller's index does
// not show it yet, and a success would break read-your-writes.
func (s *Store) await(ctx context.Context, rev int64) error {
	t := time.NewTimer(s.reqTO)
	defer t.Stop()
	for {
		s.fmu.Lock()
		if s.followers == 0 || s.delivered >= rev {
			s.fmu.Unlock()
			return nil
		}
		w := s.wake
		s.fmu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("committed at revision %d: %w (%w)", rev, store.ErrNotVisible, ctx.Err())
		case <-t.C:
			s.log.Warn("follower lags behind a write", "revision", rev)
			return fmt.Errorf("committed at revision %d, follower still behind after %v: %w", rev, s.reqTO, store.ErrNotVisible)
		}
	}
}

func (s *Store) setDelivered(rev int64) {
	s.fmu.Lock()
	if rev > s.delivered {
		s.delivered = rev
		close(s.wake)
		s.wake = make(chan struct{})
	}
	s.fmu.Unlock()
}
