package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/api"
)

// Every GET config answer carries Content-Length on the wire and is never
// chunked, on either side of autoLengthMax (where writeDoc stops setting
// it and leaves it to net/http).
func TestGuestDocContentLength(t *testing.T) {
	s := newTestServer(t, Options{})
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	publish := func(pad int) int {
		t.Helper()
		mustPublish(t, s, "vm-a", `{"userData":"`+strings.Repeat("x", pad)+`"}`)
		return len(s.get("vm-a").cur.Load().doc)
	}
	base := publish(0)
	for _, want := range []int{base, autoLengthMax - 1, autoLengthMax, autoLengthMax + 1, 3 * autoLengthMax} {
		if n := publish(want - base); n != want {
			t.Fatalf("stamped document of %d bytes, want %d", n, want)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathConfig)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, want)
		_, err = io.ReadFull(br, body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d-byte document: %v %v", want, resp.Status, err)
		}
		if len(resp.TransferEncoding) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(want) || resp.ContentLength != int64(want) {
			t.Errorf("%d-byte document: Transfer-Encoding %v, Content-Length %q", want, resp.TransferEncoding, resp.Header.Get("Content-Length"))
		}
		if string(body) != string(s.get("vm-a").cur.Load().doc) {
			t.Errorf("%d-byte document: body differs", want)
		}
	}
	if n := requestCount(s, "guest", api.PathConfig, http.StatusOK); n != 5 {
		t.Errorf("prewarm_imds_requests_total{guest,%s,200} = %v, want 5", api.PathConfig, n)
	}
}
