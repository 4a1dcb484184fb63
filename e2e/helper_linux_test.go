package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// HTTPReq is one request the helper sends from inside a guest.
type HTTPReq struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	// Src binds the connection's source address (a spoofing attempt needs
	// the address on the guest's interface first).
	Src string `json:"src"`
	// Unix sends the request over this Unix socket instead.
	Unix string `json:"unix"`
	// Raw sends these bytes as the request, verbatim, to the URL's host
	// (path tricks net/http would clean up).
	Raw string `json:"raw"`
}

// HTTPResp is what came back; Err is set when no answer came.
type HTTPResp struct {
	Code int    `json:"code"`
	Body string `json:"body"`
	Err  string `json:"err"`
}

func httpHelper() int {
	var req HTTPReq
	if err := json.Unmarshal([]byte(os.Getenv("PWE_HTTP")), &req); err != nil {
		fmt.Println(`{"err":"bad PWE_HTTP"}`)
		return 2
	}
	resp := doHTTP(req)
	b, _ := json.Marshal(resp)
	fmt.Println(string(b))
	return 0
}

func doHTTP(req HTTPReq) HTTPResp {
	d := &net.Dialer{Timeout: 3 * time.Second}
	if req.Src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(req.Src)}
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if req.Unix != "" {
			return d.DialContext(ctx, "unix", req.Unix)
		}
		return d.DialContext(ctx, network, addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if req.Raw != "" {
		host := strings.TrimPrefix(req.URL, "http://")
		host = strings.SplitN(host, "/", 2)[0]
		if !strings.Contains(host, ":") {
			host += ":80"
		}
		c, err := dial(ctx, "tcp", host)
		if err != nil {
			return HTTPResp{Err: err.Error()}
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req.Raw); err != nil {
			return HTTPResp{Err: err.Error()}
		}
		b, _ := io.ReadAll(c)
		s := string(b)
		f := strings.Fields(s)
		if len(f) < 2 {
			return HTTPResp{Err: "no status line: " + s}
		}
		code, _ := strconv.Atoi(f[1])
		if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
			s = s[i+4:]
		}
		return HTTPResp{Code: code, Body: s}
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	r, err := http.NewRequestWithContext(ctx, req.Method, req.URL, strings.NewReader(req.Body))
	if err != nil {
		return HTTPResp{Err: err.Error()}
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, "Host") {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	res, err := hc.Do(r)
	if err != nil {
		return HTTPResp{Err: err.Error()}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return HTTPResp{Code: res.StatusCode, Body: string(b)}
}

// guestHTTP sends req from inside guest g (all its namespaces).
func guestHTTP(t testing.TB, g *Guest, req HTTPReq) HTTPResp {
	t.Helper()
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	b, _ := json.Marshal(req)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := g.Exec(ctx, "env", "PWE_HELPER=http", "PWE_HTTP="+string(b), self)
	if err != nil {
		t.Fatalf("guest http helper: %v", err)
	}
	var resp HTTPResp
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &resp); err != nil {
		t.Fatalf("guest http helper output %q: %v", out, err)
	}
	return resp
}
