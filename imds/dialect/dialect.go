// Package dialect makes prewarm-imds speak the metadata dialects of public
// clouds (PROTOCOL.md section 5): EC2 (IMDSv1 and IMDSv2), Azure and GCE,
// each rendered from the same config document and registry as the native
// guest API, so that images built for those clouds (cloud-init's datasources,
// the AWS SDKs, Google's client libraries) provision unmodified.
//
// The package does not identify callers, rate-limit them or know how
// documents are stored: the server does that and hands each dialect a view
// of the calling instance. A guest request on a dialect path runs through
// the server's rules in the contract's order, with the dialect filling in
// its own header rules and error format:
//
//	d := set.Route(r.URL.Path)       // nil: not a dialect path (native API)
//	if !d.Check(w, r) { return }     // 405, then the dialect's header rules (400/403)
//	forwarding headers               // d.Error(w, r, 403, ...)
//	unknown instance                 // d.Error(w, r, 404, ...)
//	rate limit                       // Retry-After, then d.Error(w, r, 429, ...)
//	d.Serve(w, r, inst, shutdown)
//
// For the EC2 token's IP TTL of 1 the server's http.Server must install
// ConnContext (chained with its own), so the dialect can reach the
// connection a token response leaves on.
package dialect

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prewarm/prewarm/shared/config"
)

// Dialect names as the --dialects flag spells them.
const (
	NameNative = "native"
	NameEC2    = "ec2"
	NameAzure  = "azure"
	NameGCE    = "gce"
)

// DefaultList is the --dialects default: every dialect.
const DefaultList = "native,ec2,azure,gce"

// Defaults of the host-level settings.
const (
	DefaultAvailabilityZone = "prewarm-1a"
	DefaultGCEProjectID     = "prewarm"
)

// TokenMode is the EC2 IMDSv2 switch of a host: optional lets IMDSv1
// requests (without a token) through, required answers them 401.
type TokenMode int

// Token modes.
const (
	TokensOptional TokenMode = iota
	TokensRequired
)

func (m TokenMode) String() string {
	if m == TokensRequired {
		return "required"
	}
	return "optional"
}

// ParseTokenMode parses "optional" or "required".
func ParseTokenMode(s string) (TokenMode, error) {
	switch s {
	case "optional":
		return TokensOptional, nil
	case "required":
		return TokensRequired, nil
	}
	return 0, fmt.Errorf("EC2 token mode %q: must be optional or required", s)
}

// Settings are the host-level values the dialects render besides each
// instance's document.
type Settings struct {
	// AvailabilityZone is EC2's placement/availability-zone and GCE's zone
	// (DefaultAvailabilityZone when empty).
	AvailabilityZone string
	// Region is EC2's region and Azure's location; empty means the
	// availability zone without its trailing letter, as on EC2.
	Region string
	// GCEProjectID is GCE's project/project-id (DefaultGCEProjectID when
	// empty); the numeric project id is derived from it.
	GCEProjectID string
	// EC2Tokens says whether IMDSv1 requests are served.
	EC2Tokens TokenMode
	// TokenKey signs EC2 tokens; nil means a random key per process (drawn
	// at the first token the process signs or checks), so
	// tokens do not survive a restart (clients fetch a new one on 401).
	TokenKey []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives what the dialects cannot tell a client: at warning
	// level an EC2 token refused because its hop limit could not be set,
	// at debug level why a presented EC2 token was refused. nil discards
	// it.
	Logger *slog.Logger
}

// View is one consistent view of an instance: its registration and its
// current document. The server builds one per change and never modifies
// it afterwards; dialects only read it. Use it by pointer: it carries the
// dialects' rendering caches.
type View struct {
	ID            string
	Addresses     []string // registered addresses, canonical form
	HostInterface string
	// Generation is that of Doc, 0 while nothing is published.
	Generation int64
	// Doc is the current document (instanceId and generation stamped),
	// nil while none is published.
	Doc *config.Document
	// Deleted marks the view that replaces a deleted instance's last one.
	Deleted bool

	ec2   atomic.Pointer[memo]
	gce   atomic.Pointer[memo]
	azure [2]atomic.Pointer[memo] // without and with userData
	token atomic.Pointer[verifiedToken]
}

// memo is something rendered from a view for one Set (and key).
type memo struct {
	owner *Set
	key   string
	val   any
}

// cached returns what build renders from a view for s, building it at
// most once per view and set (a race builds it twice; both results are
// equal). Views are immutable, so nothing is ever invalidated: a publish
// makes a new view.
func cached[T any](p *atomic.Pointer[memo], s *Set, build func() T) T {
	return cachedKey(p, s, "", build)
}

// cachedKey is cached for a rendering that also depends on key (something
// of the request): the view keeps the one for the last key asked.
func cachedKey[T any](p *atomic.Pointer[memo], s *Set, key string, build func() T) T {
	if m := p.Load(); m != nil && m.owner == s && m.key == key {
		return m.val.(T)
	}
	v := build()
	p.Store(&memo{owner: s, key: key, val: v})
	return v
}

// Instance is the calling instance as the server tracks it.
type Instance interface {
	// Current returns the instance's current view and a channel that is
	// closed when a newer view replaces it (a publish, a re-registration,
	// a deletion).
	Current() (*View, <-chan struct{})
}

// Dialect serves one cloud's metadata paths. Its methods are safe for
// concurrent use.
type Dialect interface {
	// Name is the dialect's --dialects name.
	Name() string
	// Check applies the rules that need no instance: the method (405) and
	// the dialect's own header and query rules (Azure's Metadata and
	// api-version 400, GCE's Metadata-Flavor 403, EC2's token TTL 400 and
	// versioned token path 403). It answers and returns false when one
	// fails.
	Check(w http.ResponseWriter, r *http.Request) bool
	// Error answers code with msg in the dialect's error format; the
	// server uses it for the rules it applies itself (forwarding headers,
	// unknown instance, rate limit) on the dialect's paths.
	Error(w http.ResponseWriter, r *http.Request, code int, msg string)
	// Serve answers a request that passed every rule, for inst. shutdown
	// is closed when the server shuts down: long-polls answer at once.
	Serve(w http.ResponseWriter, r *http.Request, inst Instance, shutdown <-chan struct{})
}

// Set is the dialects one listener serves, with the host settings.
type Set struct {
	settings Settings
	tokenKey func() []byte // settings.TokenKey, or a random key drawn once at first use
	now      func() time.Time
	native   bool
	ec2      *ec2Dialect
	azure    *azureDialect
	gce      *gceDialect
}

// ParseList parses a --dialects value ("native,ec2,azure,gce", any subset,
// at least one) into dialect names without duplicates.
func ParseList(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case NameNative, NameEC2, NameAzure, NameGCE:
		case "":
			continue
		default:
			return nil, fmt.Errorf("dialect %q: must be one of native, ec2, azure, gce", f)
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("dialects: at least one of native, ec2, azure, gce is required")
	}
	return out, nil
}

// New builds the set of the named dialects ("native" is accepted and only
// recorded: the server serves the native API itself).
func New(names []string, s Settings) (*Set, error) {
	if s.AvailabilityZone == "" {
		s.AvailabilityZone = DefaultAvailabilityZone
	}
	if s.Region == "" {
		s.Region = regionOf(s.AvailabilityZone)
	}
	if s.GCEProjectID == "" {
		s.GCEProjectID = DefaultGCEProjectID
	}
	if err := checkSetting("availability zone", s.AvailabilityZone); err != nil {
		return nil, err
	}
	if err := checkSetting("region", s.Region); err != nil {
		return nil, err
	}
	if err := checkSetting("GCE project id", s.GCEProjectID); err != nil {
		return nil, err
	}
	if s.EC2Tokens != TokensOptional && s.EC2Tokens != TokensRequired {
		return nil, fmt.Errorf("EC2 token mode %d: must be optional or required", s.EC2Tokens)
	}
	set := &Set{settings: s, now: s.Now}
	if s.TokenKey != nil {
		set.tokenKey = func() []byte { return s.TokenKey }
	} else {
		// Drawn at the first token, not at start: a server that never
		// signs or checks one never reads crypto/rand (issue 15's idle
		// RSS). crypto/rand.Read does not fail since Go 1.24.
		set.tokenKey = sync.OnceValue(func() []byte {
			k := make([]byte, 32)
			rand.Read(k)
			return k
		})
	}
	if set.now == nil {
		set.now = time.Now
	}
	for _, n := range names {
		switch n {
		case NameNative:
			set.native = true
		case NameEC2:
			set.ec2 = &ec2Dialect{set: set}
		case NameAzure:
			set.azure = &azureDialect{set: set}
		case NameGCE:
			set.gce = &gceDialect{set: set}
		default:
			return nil, fmt.Errorf("dialect %q: must be one of native, ec2, azure, gce", n)
		}
	}
	if set.ec2 != nil {
		set.ec2.gceRoot = set.gce != nil
	}
	return set, nil
}

// checkSetting refuses values that would break the line and path formats
// the dialects render them into.
func checkSetting(what, v string) error {
	if len(v) > 253 {
		return fmt.Errorf("%s %q: longer than 253 characters", what, v)
	}
	for _, c := range v {
		if c <= ' ' || c > '~' || c == '/' || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return fmt.Errorf("%s %q: only printable ASCII without spaces, '/', quotes, '\\', '<', '>' or '&'", what, v)
		}
	}
	return nil
}

// regionOf is the region of an EC2-style availability zone: us-east-1a is
// in us-east-1.
func regionOf(az string) string {
	if n := len(az); n > 1 && az[n-1] >= 'a' && az[n-1] <= 'z' && az[n-2] >= '0' && az[n-2] <= '9' {
		return az[:n-1]
	}
	return az
}

func (s *Set) logf(format string, args ...any) {
	if s.settings.Logger != nil {
		s.settings.Logger.Warn(fmt.Sprintf(format, args...))
	}
}

// debugf logs what a guest can cause at will (a malformed token), at debug
// level so that it never floods the log at the default level.
func (s *Set) debugf(format string, args ...any) {
	if l := s.settings.Logger; l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug(fmt.Sprintf(format, args...))
	}
}

// Native reports whether the native API is in the set.
func (s *Set) Native() bool { return s.native }

// Names returns the dialects of the set in --dialects order.
func (s *Set) Names() []string {
	var out []string
	if s.native {
		out = append(out, NameNative)
	}
	if s.ec2 != nil {
		out = append(out, NameEC2)
	}
	if s.azure != nil {
		out = append(out, NameAzure)
	}
	if s.gce != nil {
		out = append(out, NameGCE)
	}
	return out
}

// Settings returns the effective host settings (defaults filled in).
func (s *Set) Settings() Settings {
	st := s.settings
	st.TokenKey = s.tokenKey()
	return st
}

// NativePrefix is the path prefix of the native guest API; no dialect owns
// paths under it.
const NativePrefix = "/metadata/v1/"

// Route returns the dialect that owns path, or nil when none of the set's
// dialects does (the native API's paths, and everything when the set has
// no dialect).
func (s *Set) Route(path string) Dialect {
	switch {
	case path == "/":
		// EC2 lists its versions at the root; GCE answers it with its
		// Metadata-Flavor header (which is how Google's libraries detect
		// GCE). With both, the EC2 answer carries the GCE header.
		if s.ec2 != nil {
			return s.ec2
		}
		if s.gce != nil {
			return s.gce
		}
	case strings.HasPrefix(path, "/computeMetadata"):
		if s.gce != nil && (len(path) == len("/computeMetadata") || path[len("/computeMetadata")] == '/') {
			return s.gce
		}
	case strings.HasPrefix(path, "/metadata/"):
		if s.azure != nil && !strings.HasPrefix(path, NativePrefix) {
			return s.azure
		}
	default:
		if s.ec2 != nil && s.ec2.owns(path) {
			return s.ec2
		}
	}
	return nil
}

// query is r's parsed query, parsed once for Check and Serve (r.Form
// holds it after the first call; dialects reach it only for GET and HEAD,
// which have no form body).
func query(r *http.Request) url.Values {
	if r.Form == nil {
		if r.ParseForm() != nil && r.Form == nil {
			return url.Values{}
		}
	}
	return r.Form
}

type connKey struct{}

// ConnContext records c in ctx so that an EC2 token response can set the
// IP TTL of the connection it leaves on. Chain it into the guest
// listener's http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

func connFrom(ctx context.Context) net.Conn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return c
}

// setOf is the set of vs: a dialect's known API versions.
func setOf(vs []string) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[v] = true
	}
	return m
}
