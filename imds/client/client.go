// Package client is a Go client of the prewarm-imds admin API
// (PROTOCOL.md section 3), over its Unix socket or over TCP with a bearer
// token. The prewarm-imds CLI uses it.
//
//	c := client.NewUnix("/run/prewarm/imds-admin.sock")
//	_, err := c.Register(ctx, "vm-1", api.Registration{Addresses: []string{"10.0.0.4"}})
//	gen, err := c.Publish(ctx, "vm-1", docJSON)
//	h, err := c.Status(ctx, "vm-1", 0, true, time.Minute)
package client

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
)

// ErrNotModified is returned by Status when a wait ended without a new
// report (the server's 304).
var ErrNotModified = errors.New("not modified")

// Error is an error answer of the admin API.
type Error struct {
	StatusCode int
	Body       api.Error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Body.Error)
	for _, f := range e.Body.Fields {
		b.WriteString("; ")
		if f.Path != "" {
			b.WriteString(f.Path + ": ")
		}
		b.WriteString(f.Reason)
	}
	return b.String()
}

// StatusCode returns the HTTP status of an *Error in err's chain, or 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// Client talks to one prewarm-imds admin API.
type Client struct {
	base  string
	token string
	hc    Doer
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends `Authorization: Bearer <token>` (for the TCP listener).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient replaces the HTTP client (its transport decides where
// requests go).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// Doer sends one request and returns its answer; *http.Client is one.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// New returns a client of the admin API at baseURL whose requests d
// sends: the prewarm-imds CLI's own HTTP/1.1 sender, which does not link
// net/http's Transport into the binary that also runs the service.
func New(baseURL string, d Doer, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: d}
	for _, o := range opts {
		o(c)
	}
	return c
}

// NewUnix returns a client of the admin API on the Unix socket path.
func NewUnix(path string, opts ...Option) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	c := &Client{base: "http://imds-admin", hc: &http.Client{Transport: tr}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// NewHTTP returns a client of the admin API at baseURL (for example
// "http://127.0.0.1:8081"); pass WithToken for the bearer token.
func NewHTTP(baseURL string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

func instancePath(id string, sub string) string {
	p := api.PathInstances + "/" + url.PathEscape(id)
	if sub != "" {
		p += "/" + sub
	}
	return p
}

// do sends one request and decodes a 2xx JSON answer into out (when not
// nil). It returns the response headers and status.
func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, body []byte, out any) (http.Header, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", api.ContentTypeJSON)
	}
	if c.token != "" {
		req.Header.Set(api.HeaderAuthorization, "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode == http.StatusNotModified {
		return resp.Header, resp.StatusCode, nil
	}
	if resp.StatusCode >= 300 {
		e := &Error{StatusCode: resp.StatusCode}
		if json.Unmarshal(data, &e.Body) != nil || e.Body.Error == "" {
			e.Body.Error = strings.TrimSpace(string(data))
		}
		return resp.Header, resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, e)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.Header, resp.StatusCode, nil
}

// Register registers or updates instance id.
func (c *Client) Register(ctx context.Context, id string, reg api.Registration) (api.Instance, error) {
	body, err := json.Marshal(reg)
	if err != nil {
		return api.Instance{}, err
	}
	var inst api.Instance
	_, _, err = c.do(ctx, http.MethodPut, instancePath(id, ""), nil, body, &inst)
	return inst, err
}

// Publish publishes the JSON config document doc for id and returns its
// generation.
func (c *Client) Publish(ctx context.Context, id string, doc []byte) (int64, error) {
	return c.publish(ctx, id, doc, nil)
}

// PublishIfMatch publishes doc only if id's current generation is ifMatch
// (0: nothing published yet); otherwise the error has StatusCode 412.
func (c *Client) PublishIfMatch(ctx context.Context, id string, doc []byte, ifMatch int64) (int64, error) {
	return c.publish(ctx, id, doc, &ifMatch)
}

func (c *Client) publish(ctx context.Context, id string, doc []byte, ifMatch *int64) (int64, error) {
	var hdr http.Header
	if ifMatch != nil {
		hdr = http.Header{api.HeaderIfMatch: {strconv.Quote(strconv.FormatInt(*ifMatch, 10))}}
	}
	if doc == nil {
		doc = []byte{}
	}
	var res api.PublishResult
	_, _, err := c.do(ctx, http.MethodPut, instancePath(id, "config"), hdr, doc, &res)
	return res.Generation, err
}

// GetConfig returns id's current document, plaintext passwords redacted.
func (c *Client) GetConfig(ctx context.Context, id string) (*config.Document, error) {
	var d config.Document
	if _, _, err := c.do(ctx, http.MethodGet, instancePath(id, "config"), nil, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Instance returns one instance.
func (c *Client) Instance(ctx context.Context, id string) (api.Instance, error) {
	var inst api.Instance
	_, _, err := c.do(ctx, http.MethodGet, instancePath(id, ""), nil, nil, &inst)
	return inst, err
}

// List returns every instance.
func (c *Client) List(ctx context.Context) ([]api.Instance, error) {
	var l api.InstanceList
	_, _, err := c.do(ctx, http.MethodGet, api.PathInstances, nil, nil, &l)
	return l.Instances, err
}

// InstanceList returns every instance and the list's entity tag. With
// etag set it returns ErrNotModified while the list still has that tag;
// with wait too it waits for the list to change, up to timeout (0: the
// server's default of 60 s; at most 300 s): the long-poll of
// prewarm-imds list --watch.
func (c *Client) InstanceList(ctx context.Context, etag string, wait bool, timeout time.Duration) (*api.InstanceList, string, error) {
	p := api.PathInstances
	if wait {
		q := url.Values{"wait": {"true"}}
		if timeout > 0 {
			q.Set("timeout", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64))
		}
		p += "?" + q.Encode()
	}
	var hdr http.Header
	if etag != "" {
		hdr = http.Header{api.HeaderIfNoneMatch: {etag}}
	}
	var l api.InstanceList
	h, code, err := c.do(ctx, http.MethodGet, p, hdr, nil, &l)
	if err != nil {
		return nil, "", err
	}
	if code == http.StatusNotModified {
		return nil, h.Get(api.HeaderETag), ErrNotModified
	}
	if l.Instances == nil {
		l.Instances = []api.Instance{}
	}
	return &l, h.Get(api.HeaderETag), nil
}

// Delete forgets instance id, its config and its status history.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, _, err := c.do(ctx, http.MethodDelete, instancePath(id, ""), nil, nil, nil)
	return err
}

// Status returns id's status reports with seq above after (all for 0),
// oldest first, following the server's pages (api.DefaultStatusPage
// reports each) to the last. With wait it blocks until there is one, up to
// timeout (0: the server's default of 60 s; at most 300 s), and returns
// ErrNotModified when none came.
func (c *Client) Status(ctx context.Context, id string, after uint64, wait bool, timeout time.Duration) (*api.StatusHistory, error) {
	var all *api.StatusHistory
	for {
		h, err := c.statusPage(ctx, id, after, wait, timeout)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = h
		} else {
			all.Reports = append(all.Reports, h.Reports...)
		}
		if !h.More {
			all.More, all.Next = false, 0
			return all, nil
		}
		if h.Next <= after {
			return nil, fmt.Errorf("read status of %q: the server's next cursor %d does not advance past after=%d", id, h.Next, after)
		}
		after, wait = h.Next, false
	}
}

// statusPage gets one page of id's status reports.
func (c *Client) statusPage(ctx context.Context, id string, after uint64, wait bool, timeout time.Duration) (*api.StatusHistory, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	if wait {
		q.Set("wait", "true")
		if timeout > 0 {
			q.Set("timeout", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64))
		}
	}
	p := instancePath(id, "status")
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var h api.StatusHistory
	_, code, err := c.do(ctx, http.MethodGet, p, nil, nil, &h)
	if err != nil {
		return nil, err
	}
	if code == http.StatusNotModified {
		return nil, ErrNotModified
	}
	return &h, nil
}

// Healthz checks the server is alive.
func (c *Client) Healthz(ctx context.Context) error {
	_, _, err := c.do(ctx, http.MethodGet, api.PathHealthz, nil, nil, nil)
	return err
}
