// Command bare is the benchmark's yardstick: a bare net/http handler that
// serves the same bytes and headers the IMDS answers GET
// /metadata/v1/config with, so that the ratio of the two rates shows what
// the IMDS's own work (identity, header rules, metrics) costs.
//
//	bare -listen 127.0.0.1:18081 -copy-from http://127.0.0.1:18080/metadata/v1/config
//
// With -header it copies a cloud dialect's answer instead (dialects.sh):
//
//	bare -listen 127.0.0.1:18082 -copy-from http://127.0.0.1:18080/computeMetadata/v1/ -header 'Metadata-Flavor: Google'
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to serve on")
	from := flag.String("copy-from", "", "URL of the IMDS config to copy (fetched once with Metadata: true)")
	var headers []string
	flag.Func("header", "an extra request header \"Name: value\" for the copy (repeatable)", func(v string) error {
		headers = append(headers, v)
		return nil
	})
	flag.Parse()
	req, err := http.NewRequest("GET", *from, nil)
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Metadata", "true")
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			log.Fatalf("-header %q: want \"Name: value\"", h)
		}
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		log.Fatalf("copy %s: %d %v", *from, resp.StatusCode, err)
	}
	// Every header of the IMDS's answer but Date, which net/http writes
	// for both, so that both answers are the same bytes on the wire.
	// (Before 2026-12-03 evening only Content-Type, ETag and
	// Content-Length were copied: the IMDS's Cache-Control, which the
	// contract requires, was the bare answer's missing line.)
	type field struct {
		name  string
		value []string
	}
	var copied []field
	for k, v := range resp.Header {
		if k != "Date" && k != "Content-Length" {
			copied = append(copied, field{k, v})
		}
	}
	// Content-Length as the IMDS does it: net/http counts a body of up to
	// 2 KiB itself (and writes the line in its own place), a larger one
	// carries it in the header map.
	if len(body) > 2048 {
		copied = append(copied, field{"Content-Length", []string{strconv.Itoa(len(body))}})
	}
	fmt.Fprintf(os.Stderr, "bare: serving %d bytes and %d headers on %s\n", len(body), len(copied), *listen)
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, f := range copied {
			h[f.name] = f.value
		}
		w.Write(body)
	})))
}
