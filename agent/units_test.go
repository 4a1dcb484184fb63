package agent

import (
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prewarm/prewarm/shared/config"
)

func TestBackoff(t *testing.T) {
	b := backoff{base: 100 * time.Millisecond, max: 10 * time.Second}
	for i := range 40 {
		ceil := min(100*time.Millisecond<<i, 10*time.Second)
		if i > 30 {
			ceil = 10 * time.Second
		}
		d := b.next(0)
		if d < minWait || d > max(ceil, minWait) {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, minWait, ceil)
		}
	}
	if d := b.next(3 * time.Second); d < 3*time.Second || d > 10*time.Second+300*time.Millisecond {
		t.Errorf("with Retry-After 3s: %v", d)
	}
	b.reset()
	if d := b.next(0); d > 100*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}

// TestBackoffRefused: after many failures a refused connection (the IMDS
// restarting) is retried within refusedMax, other failures within the full
// cap.
func TestBackoffRefused(t *testing.T) {
	b := backoff{base: 100 * time.Millisecond, max: 10 * time.Second, n: 20}
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	var longest time.Duration
	for range 200 {
		if d := b.after(refused); d > refusedMax {
			t.Fatalf("after a refused connection: %v, want at most %v", d, refusedMax)
		}
		longest = max(longest, b.after(errors.New("i/o timeout")))
	}
	if longest <= refusedMax {
		t.Errorf("other failures never waited past %v (longest %v): the full cap was lost", refusedMax, longest)
	}
}

// TestBackoffAfterRefusals: a restarting IMDS refuses connections for a
// while; the first other failure once it is back (a reset while it
// starts) waits about as long as a refusal, not a draw from a ceiling the
// refusals escalated to the full cap (seen as a 5 s resume in e2e).
func TestBackoffAfterRefusals(t *testing.T) {
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	const limit = 2 * refusedMax // the next level up from a refusal's ceiling
	for range 200 {
		b := backoff{base: 100 * time.Millisecond, max: 10 * time.Second}
		for range 20 {
			b.after(refused)
		}
		if d := b.after(errors.New("connection reset by peer")); d > limit {
			t.Fatalf("first other failure after 20 refusals waits %v, want at most %v", d, limit)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "2": 2 * time.Second, "-3": 0, "999999": 5 * time.Minute, "soon": 0} {
		if got := parseRetryAfter(in); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
	if got := parseRetryAfter(time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)); got < 28*time.Second || got > 30*time.Second {
		t.Errorf("HTTP date: %v", got)
	}
}

func TestSecretsIn(t *testing.T) {
	got := secretsIn([]byte(`{"users":[{"name":"a","password":"p1"},{"Password":"p2","x":{"password":"p3"}}],"password":5}`))
	if len(got) != 3 {
		t.Errorf("secretsIn = %v", got)
	}
	r := NewRedactor()
	r.Add(got...)
	if s := r.String("p1 and p2 and p3"); s != "REDACTED and REDACTED and REDACTED" {
		t.Errorf("redacted: %q", s)
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("short", 100); got != "short" {
		t.Errorf("%q", got)
	}
	long := strings.Repeat("ä", 100) // 200 bytes
	got := truncate(long, 51)
	if len(got) > 51 || !utf8.ValidString(got) || !strings.HasSuffix(got, "(truncated)") {
		t.Errorf("truncate = %q (%d bytes)", got, len(got))
	}
}

// FuzzSecretsIn: secretsIn reads whatever the wire brings.
func FuzzSecretsIn(f *testing.F) {
	f.Add([]byte(`{"users":[{"password":"x"}]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range secretsIn(b) {
			if s == "" || strings.Contains(config.Redacted, s) {
				continue
			}
			r := NewRedactor()
			r.Add(s)
			if strings.Contains(r.String("<"+s+">"), s) {
				t.Errorf("secret %q survives redaction", s)
			}
		}
	})
}

// TestIfNoneMatch: the If-None-Match comes from the state: the attempted
// ETag verbatim, else the attempted generation; never a value that does
// not parse (a damaged state file must not make every request invalid).
func TestIfNoneMatch(t *testing.T) {
	for _, c := range []struct {
		st   State
		want string
	}{
		{State{}, ""},
		{State{AttemptedGeneration: 3}, `"3"`},
		{State{AttemptedGeneration: 3, AttemptedETag: `"3.9f86d081884c7d65"`}, `"3.9f86d081884c7d65"`},
		{State{AttemptedGeneration: 3, AttemptedETag: `W/"3"`}, `W/"3"`},
		{State{AttemptedGeneration: 3, AttemptedETag: "\"3\"\r\nX-Evil: 1"}, `"3"`},
	} {
		if got := c.st.ifNoneMatch(); got != c.want {
			t.Errorf("ifNoneMatch of %+v = %q, want %q", c.st, got, c.want)
		}
	}
}
