package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
)

// adminConn sends each admin API request of the CLI on a connection of
// its own, in HTTP/1.1 (Request.Write, then http.ReadResponse), and closes
// the connection with the answer's body. The CLI makes a few requests one
// after the other, so it loses nothing by not pooling them; in exchange
// net/http's Transport (its pool, HTTP/2 client, proxy and gzip support)
// is not linked into prewarm-imds, the binary that also runs the service:
// the binary is 0.47 MB smaller (issue 15; what that does to the idle
// server's resident pages depends on the layout: BENCHMARKS.md).
// HTTP_PROXY and HTTPS_PROXY are not used: the admin API is on the
// host's own network.
type adminConn struct {
	network string // "unix" or "tcp"
	addr    string // the socket's path; "" for the URL's host
	// roots verifies an https server's certificate; nil means the host's
	// trusted roots (tests set their own).
	roots *x509.CertPool
}

func (a adminConn) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	addr, secure := a.addr, false
	switch req.URL.Scheme {
	case "http":
	case "https":
		secure = true
	default:
		return nil, fmt.Errorf("admin API URL %q: scheme must be http or https", req.URL.Redacted())
	}
	if addr == "" {
		host, port := req.URL.Hostname(), req.URL.Port()
		if port == "" {
			port = "80"
			if secure {
				port = "443"
			}
		}
		addr = net.JoinHostPort(host, port)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, a.network, addr)
	if err != nil {
		return nil, err
	}
	// A cancelled or expired request closes its connection, which ends a
	// Write, ReadResponse or body Read blocked on it; their error is then
	// the context's. It closes the socket itself (raw), not c, which
	// becomes the TLS connection on it: the context's goroutine reading c
	// while https assigns it was a data race (an interface value, two
	// words, could be read torn).
	raw := c
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if secure {
		tc := tls.Client(c, &tls.Config{ServerName: req.URL.Hostname(), RootCAs: a.roots})
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		c = tc
	}
	req.Close = true // Connection: close, as this connection carries no other request
	// The request is written while its answer is read, as net/http's
	// Transport does: a server may answer before it has read the whole
	// body (413 of a document over the limit) and close the connection,
	// and the answer, not the write's broken pipe, is what the caller
	// wants then.
	wrote := make(chan error, 1)
	go func() { wrote <- req.Write(c) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		res, ferr := fail(err)
		werr := <-wrote // ended by fail's close at the latest
		if werr != nil && !errors.Is(werr, net.ErrClosed) && ctx.Err() == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			// The server closed without an answer while the request
			// was written: the write's error (a reset in the middle of
			// the body) says more than the answer's EOF.
			ferr = werr
		}
		return res, ferr
	}
	resp.Body = &connBody{body: resp.Body, conn: c, stop: stop, ctx: ctx, wrote: wrote}
	return resp, nil
}

// connBody is an answer's body that closes its connection with it.
type connBody struct {
	body io.ReadCloser
	conn net.Conn
	stop func() bool
	ctx  context.Context
	// wrote is the request's write (it may still go on when the
	// server answered early); Close ends it with the connection.
	wrote <-chan error
	once  sync.Once
}

func (b *connBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && b.ctx.Err() != nil {
		err = b.ctx.Err()
	}
	return n, err
}

func (b *connBody) Close() error {
	b.once.Do(func() {
		b.stop()
		b.body.Close()
		b.conn.Close()
		<-b.wrote
	})
	return nil
}
