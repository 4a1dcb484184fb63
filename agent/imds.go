package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// HTTPError is a non-success answer of the IMDS.
type HTTPError struct {
	Op         string // "get config", "post status"
	StatusCode int
	Message    string // the error body's "error", if any
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("%s: HTTP %d", e.Op, e.StatusCode)
}

// msgNoConfig is the IMDS's "no config published" answer.
const msgNoConfig = "no config published"

// errRedirectOffIMDS is a redirect to anywhere but the configured IMDS
// (another host, port or scheme). The agent never follows one: the document
// and the reports belong to the IMDS alone.
var errRedirectOffIMDS = errors.New("redirect away from the IMDS refused")

// maxRedirects bounds the redirects followed within the IMDS itself.
const maxRedirects = 3

// imdsClient speaks the guest API (PROTOCOL.md section 2).
type imdsClient struct {
	base   string
	origin string // scheme://host:port of base, for redirects
	tr     *http.Transport
	hc     *http.Client
}

func newIMDSClient(base string) (*imdsClient, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("imds url %q: must be http://host[:port]", base)
	}
	tr := &http.Transport{
		// The IMDS is link-local: never go through a proxy from the
		// environment.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 2,
		// No idle timer: the long-poll's connection is idle only for the
		// moment between two polls, and the reports' connection is closed
		// when the queue drains (closeIdle). Each round of an idle timer
		// would leave a timer in the runtime that wakes it while parked.
		IdleConnTimeout:       0,
		ResponseHeaderTimeout: 0, // long-polls park; each request has a context deadline instead
	}
	c := &imdsClient{base: strings.TrimRight(base, "/"), origin: origin(u), tr: tr}
	c.hc = &http.Client{Transport: tr, CheckRedirect: c.checkRedirect}
	return c, nil
}

// checkRedirect follows a redirect only within the IMDS's own origin.
func (c *imdsClient) checkRedirect(req *http.Request, via []*http.Request) error {
	if o := origin(req.URL); o != c.origin {
		return fmt.Errorf("%w: %s answered %d with a redirect to %s", errRedirectOffIMDS,
			c.origin, req.Response.StatusCode, o)
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	return nil
}

// origin is u's scheme://host:port, the port made explicit and the host
// lowercased, so equal origins compare equal.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// reconnect drops idle connections, so the next request dials afresh (after
// a DHCP renewal the guest's address may have changed).
func (c *imdsClient) reconnect() { c.tr.CloseIdleConnections() }

// closeIdle drops idle connections (the report queue drained).
func (c *imdsClient) closeIdle() { c.tr.CloseIdleConnections() }

// configAnswer is one answer of GET /metadata/v1/config.
type configAnswer struct {
	NotModified bool
	// ETag is the answer's entity tag, verbatim, if it is one the agent
	// reads ("" if there was none); Generation and Epoch are its parts.
	ETag       string
	Generation int64
	Epoch      string
	Body       []byte
}

// getConfig fetches the config. With wait > 0 it long-polls for a
// document other than the one of the entity tag known ("": none known).
func (c *imdsClient) getConfig(ctx context.Context, known string, wait time.Duration) (configAnswer, error) {
	u := c.base + api.PathConfig
	if wait > 0 {
		u += "?wait=true&timeout=" + strconv.Itoa(max(1, int(wait/time.Second)))
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+15*time.Second)
		defer cancel()
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return configAnswer{}, fmt.Errorf("get config: %w", err)
	}
	req.Header.Set(api.HeaderMetadata, api.MetadataTrue)
	if known != "" {
		req.Header.Set(api.HeaderIfNoneMatch, known)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return configAnswer{}, fmt.Errorf("get config: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, config.MaxDocumentBytes+1))
	if err != nil {
		return configAnswer{}, fmt.Errorf("get config: read body: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		ans := configAnswer{Body: body}
		if tag := strings.TrimSpace(resp.Header.Get(api.HeaderETag)); tag != "" {
			if t, err := api.ParseETag(tag); err == nil {
				ans.ETag, ans.Generation, ans.Epoch = tag, t.Generation, t.Epoch
			}
		}
		return ans, nil
	case http.StatusNotModified:
		return configAnswer{NotModified: true}, nil
	}
	return configAnswer{}, httpError("get config", resp, body)
}

// postStatus sends one report.
func (c *imdsClient) postStatus(ctx context.Context, r *status.Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("post status: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+api.PathStatus, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("post status: %w", err)
	}
	req.Header.Set(api.HeaderMetadata, api.MetadataTrue)
	req.Header.Set("Content-Type", api.ContentTypeJSON)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("post status: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return httpError("post status", resp, body)
}

func httpError(op string, resp *http.Response, body []byte) *HTTPError {
	e := &HTTPError{Op: op, StatusCode: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get(api.HeaderRetryAfter))}
	var eb api.Error
	if json.Unmarshal(body, &eb) == nil {
		e.Message = eb.Error
	}
	return e
}

// epochOf is the store epoch an ETag names ("" for none, the older form,
// or a tag that does not parse).
func epochOf(tag string) string {
	t, _ := api.ParseETag(tag)
	return t.Epoch
}

// parseRetryAfter reads delay-seconds or an HTTP date; it is capped at five
// minutes so a broken server cannot park the agent for good.
func parseRetryAfter(s string) time.Duration {
	if s == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(s); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), 5*time.Minute)
}

// failureKind names a failure for log-flood control and backoff decisions.
func failureKind(err error) string {
	var he *HTTPError
	switch {
	case errors.As(err, &he):
		return "http " + strconv.Itoa(he.StatusCode)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, errRedirectOffIMDS):
		return "redirect"
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return "network " + ne.Op
	}
	return "error"
}

func retryAfterOf(err error) time.Duration {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.RetryAfter
	}
	return 0
}
