package server

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// The fleet page: a read-only view of the instances, served on the admin
// API only (the Unix socket, and the TCP listener behind its bearer
// token), never on a guest listener. It is rendered on the server with
// html/template (every value is escaped for where it stands), needs no
// JavaScript framework, and stays live: a few lines of JavaScript
// (ui/ui.js) take the page's live part, rendered as on a reload, from a
// server-sent event stream whenever the fleet changes; without JavaScript
// the page reloads itself (a <noscript> refresh).
//
//	GET /ui/                        the fleet (?state=S&stale=1 filter it)
//	GET /ui/events                  its event stream (same filters)
//	GET /ui/instances/{id}          one instance and its report history
//	GET /ui/instances/{id}/events   its event stream
//	GET /ui/static/{ui.css,ui.js}

// UI paths.
const (
	PathUI       = "/ui/"
	uiRefresh    = 10 * time.Second       // a stream's re-render (ages move on); the no-JS reload
	uiCoalesce   = 500 * time.Millisecond // a stream's wait after a change, for the changes that come with it
	uiMaxStreams = 64                     // event streams open at once, in all
	// uiMaxRows bounds the rows of one fleet page (the summary counts
	// them all; the filters narrow them): a render of 500 rows takes a few
	// milliseconds, one of 10,000 some 200 ms of CPU and 5 MB on every
	// update (BenchmarkFleetPageRender).
	uiMaxRows = 500
	// uiMaxError bounds a row's error text (a guest's report may carry
	// 64 KiB of it; the instance's page shows it whole).
	uiMaxError = 300
)

//go:embed ui
var uiFiles embed.FS

// uiTemplates parses the page's templates at the first render, not at
// start: a service nobody opens the page of never runs html/template's
// parser (issue 15: the idle server's resident pages). The templates are
// embedded, so a parse error is a build's bug (TestUITemplatesParse).
var uiTemplates = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("ui").Funcs(template.FuncMap{
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"clock":   func(t time.Time) string { return t.UTC().Format("15:04:05 UTC") },
	}).ParseFS(uiFiles, "ui/ui.tmpl"))
})

// uiStatic serves ui/ui.css and ui/ui.js.
var uiStatic = sync.OnceValue(func() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err)
	}
	return http.StripPrefix("/ui/static/", http.FileServerFS(sub))
})

// uiRoutes adds the fleet page's routes to mux (the fleet page's own,
// built at its first request: adminRouter).
func (s *Server) uiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		// Relative, so that it holds behind a proxy's path prefix too.
		w.Header().Set("Location", "ui/")
		w.WriteHeader(http.StatusMovedPermanently)
	})
	handleAdmin(mux, "/ui/{$}", adminRoute{http.MethodGet, s.uiFleet})
	handleAdmin(mux, "/ui/events", adminRoute{http.MethodGet, s.uiFleetEvents})
	handleAdmin(mux, "/ui/instances/{id}", adminRoute{http.MethodGet, withID(s.uiInstance)})
	handleAdmin(mux, "/ui/instances/{id}/events", adminRoute{http.MethodGet, withID(s.uiInstanceEvents)})
	handleAdmin(mux, "/ui/static/{file}", adminRoute{http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		if f := r.PathValue("file"); f != "ui.css" && f != "ui.js" {
			noSuchPath(w, r)
			return
		}
		uiHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		uiStatic().ServeHTTP(w, r)
	}})
}

// uiHeaders sets the headers of every fleet page answer: no framing, no
// script or style but the page's own, nothing cached or sniffed.
func uiHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// uiRow is one instance as the fleet page shows it.
type uiRow struct {
	ID            string
	Addresses     []string
	HostInterface string
	Labels        []uiLabel
	Hostname      string
	Published     int64
	Partial       bool
	Last          *status.Report
	State         string // Last's state, stateNone without one
	Behind        bool   // Last's generation is older than Published
	Error         string // Last's error, cut at uiMaxError bytes
	LastSeen      time.Time
	Age           string
	Stale         bool
}

type uiLabel struct{ K, V string }

type uiCount struct {
	State string
	N     int
}

// uiFilter is the fleet page's filter (?state=&stale=1).
type uiFilter struct {
	State string
	Stale bool
}

func parseUIFilter(q url.Values) (uiFilter, error) {
	f := uiFilter{State: q.Get("state")}
	if f.State != "" && f.State != stateNone && !status.ValidState(f.State) {
		return f, fmt.Errorf("query parameter state must be one of %s (got %q)", strings.Join(append([]string{stateNone}, reportStates...), ", "), f.State)
	}
	switch v := q.Get("stale"); v {
	case "", "0", "false":
	case "1", "true", "on":
		f.Stale = true
	default:
		return f, fmt.Errorf("query parameter stale must be 1 or 0 (got %q)", v)
	}
	return f, nil
}

func (f uiFilter) match(r uiRow) bool {
	return (f.State == "" || r.State == f.State) && (!f.Stale || r.Stale)
}

func (f uiFilter) query() string {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Stale {
		q.Set("stale", "1")
	}
	return q.Encode()
}

// uiPage is what the templates render.
type uiPage struct {
	Title          string
	Root           string // the relative path to /ui/
	Events         string // the live part's event stream, relative
	RefreshSeconds int
	Now            time.Time

	// The fleet.
	States   []string
	Filter   uiFilter
	Filtered bool
	Rows     []uiRow
	Matched  int // rows the filter matches; more than len(Rows) past uiMaxRows
	Max      int // uiMaxRows
	Total    int
	Counts   []uiCount
	Stale    int

	// One instance.
	ID         string
	Gone       bool
	Row        *uiRow
	Reports    []status.Report
	HistoryErr string

	// The login form (uiauth.go).
	LoginError string
}

// age formats d for the page: 42s, 3m05s, 2h10m, 3d04h.
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch s := int64(d / time.Second); {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 48*3600:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}

// uiRowOf builds inst's row as of now.
func (s *Server) uiRowOf(inst api.Instance, now time.Time) uiRow {
	fi := s.fleet.info(inst.ID, inst.Generation, inst.LastStatus, now)
	r := uiRow{
		ID: inst.ID, Addresses: inst.Addresses, HostInterface: inst.HostInterface,
		Hostname: fi.Hostname, Published: inst.Generation, Partial: fi.Partial,
		Last: inst.LastStatus, State: stateNone, LastSeen: fi.LastSeen, Stale: fi.Stale,
	}
	for k, v := range inst.Labels {
		r.Labels = append(r.Labels, uiLabel{k, v})
	}
	sort.Slice(r.Labels, func(i, j int) bool { return r.Labels[i].K < r.Labels[j].K })
	if r.Last != nil {
		r.State = r.Last.State
		r.Behind = r.Last.Generation < r.Published
		r.Error = r.Last.Error
		if len(r.Error) > uiMaxError {
			r.Error = strings.ToValidUTF8(r.Error[:uiMaxError], "") + "…"
		}
	}
	if !r.LastSeen.IsZero() {
		r.Age = age(now.Sub(r.LastSeen))
	}
	return r
}

// fleetPage gathers the fleet page's data.
func (s *Server) fleetPage(f uiFilter) *uiPage {
	now := s.opts.Now()
	p := &uiPage{
		Title: "fleet", Root: "./", Events: "events", RefreshSeconds: int(uiRefresh / time.Second), Now: now, Max: uiMaxRows,
		States: append([]string{stateNone}, reportStates...), Filter: f, Filtered: f != uiFilter{},
	}
	if q := f.query(); q != "" {
		p.Events += "?" + q
	}
	counts := map[string]int{}
	for _, inst := range s.Instances() {
		r := s.uiRowOf(inst, now)
		p.Total++
		counts[r.State]++
		if r.Stale {
			p.Stale++
		}
		if f.match(r) {
			p.Matched++
			if len(p.Rows) < uiMaxRows {
				p.Rows = append(p.Rows, r)
			}
		}
	}
	for _, st := range p.States {
		if counts[st] > 0 {
			p.Counts = append(p.Counts, uiCount{st, counts[st]})
		}
	}
	return p
}

// instancePage gathers the page of instance id: its row and its report
// history, newest first.
func (s *Server) instancePage(r *http.Request, id string) *uiPage {
	now := s.opts.Now()
	p := &uiPage{
		Title: "instance " + id, Root: "../", Events: id + "/events", RefreshSeconds: int(uiRefresh / time.Second), Now: now, ID: id,
	}
	inst, ok := s.Instance(id)
	if !ok {
		p.Gone = true
		return p
	}
	row := s.uiRowOf(inst, now)
	p.Row = &row
	hist, err := s.st.StatusHistory(r.Context(), id)
	if err != nil {
		p.HistoryErr = "the report history cannot be read: " + storeError(id, err).Error()
	}
	slices.Reverse(hist)
	p.Reports = hist
	return p
}

// uiRender renders template name with p.
func uiRender(name string, p *uiPage) ([]byte, error) {
	var b bytes.Buffer
	if err := uiTemplates().ExecuteTemplate(&b, name, p); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

func (s *Server) uiWrite(w http.ResponseWriter, code int, name string, p *uiPage) {
	b, err := uiRender(name, p)
	if err != nil {
		s.log.Error("fleet page", "err", err)
		writeError(w, http.StatusInternalServerError, "the page could not be rendered")
		return
	}
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b)
}

func (s *Server) uiFleet(w http.ResponseWriter, r *http.Request) {
	f, err := parseUIFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.uiWrite(w, http.StatusOK, "fleet", s.fleetPage(f))
}

func (s *Server) uiInstance(w http.ResponseWriter, r *http.Request, id string) {
	p := s.instancePage(r, id)
	code := http.StatusOK
	if p.Gone {
		code = http.StatusNotFound
	}
	s.uiWrite(w, code, "instance", p)
}

func (s *Server) uiFleetEvents(w http.ResponseWriter, r *http.Request) {
	f, err := parseUIFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.uiStream(w, r, func() ([]byte, error) { return uiRender("fleet-live", s.fleetPage(f)) })
}

func (s *Server) uiInstanceEvents(w http.ResponseWriter, r *http.Request, id string) {
	s.uiStream(w, r, func() ([]byte, error) { return uiRender("instance-live", s.instancePage(r, id)) })
}

// uiStream serves a server-sent event stream of the page's live part:
// an "update" event with render's output at once, then whenever the fleet
// changes (a publish, a registration, a report, a deletion: after
// uiCoalesce, so a burst is one event) and every uiRefresh, when it
// differs from the last one sent. It ends with the client, at Shutdown,
// or when a write stalls.
func (s *Server) uiStream(w http.ResponseWriter, r *http.Request, render func() ([]byte, error)) {
	if n := s.fleet.streams.Add(1); n > uiMaxStreams {
		s.fleet.streams.Add(-1)
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "too many fleet page streams open (%d)", uiMaxStreams)
		return
	}
	defer s.fleet.streams.Add(-1)
	uiHeaders(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(uiRefresh))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send([]byte("retry: 2000\n\n")) {
		return
	}
	tick := time.NewTicker(uiRefresh)
	defer tick.Stop()
	var last []byte
	for {
		changed := s.fleet.changed()
		b, err := render()
		if err != nil {
			s.log.Error("fleet page stream", "err", err)
			return
		}
		if !bytes.Equal(b, last) {
			if !send(sseEvent("update", b)) {
				return
			}
			last = b
		}
		select {
		case <-changed:
			select {
			case <-time.After(uiCoalesce):
			case <-s.shutdown:
				return
			case <-r.Context().Done():
				return
			}
		case <-tick.C:
		case <-s.shutdown:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// sseEvent encodes one server-sent event: every line of data is a data:
// field (a client joins them with newlines again).
func sseEvent(name string, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("event: " + name + "\n")
	text := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r", "\n")
	for line := range strings.SplitSeq(text, "\n") {
		b.WriteString("data: ")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}
