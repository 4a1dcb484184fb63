// Package publishdir ingests the publish directory (protocol.md section 3):
// it watches DIR for <id>.json files, reads each one without trusting it
// (security.md item 11), decodes it and hands it to the server's Apply,
// then moves it to done/, or to rejected/ beside a <name>.error file
// holding the error object the admin API would have answered with.
package publishdir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/prewarm/prewarm/shared/api"
)

// Subdirectories of the publish directory.
const (
	DoneDir     = "done"
	RejectedDir = "rejected"
)

// debounce gathers the events of one write before ingesting.
const debounce = 20 * time.Millisecond

// Rejection is an error that refuses a publish file: the HTTP status and
// the error object the admin API answers with for the same mistake. A
// rejected file's .error file holds ErrorBody, so both stay identical.
type Rejection interface {
	error
	HTTPStatus() int
	ErrorBody() api.Error
}

// ApplyFunc applies one decoded publish file for instance id, all or
// nothing, and returns the generation the instance is at. f has
// addresses or a host interface, a config that is not null, or both. An
// error that is a Rejection with a 4xx status moves the file to
// rejected/; any other error leaves it for the next start.
type ApplyFunc func(ctx context.Context, id string, f api.PublishFile) (generation int64, err error)

// Options configure a Dir.
type Options struct {
	// Path is the directory to watch; Start creates it and its
	// subdirectories.
	Path string
	// MaxFileBytes caps a publish file.
	MaxFileBytes int
	Apply        ApplyFunc
	// OnReject, when set, runs once for every file moved to rejected/.
	OnReject func()
	Logger   *slog.Logger
}

// Dir is a watched publish directory.
type Dir struct {
	o    Options
	log  *slog.Logger
	w    *fsnotify.Watcher
	quit chan struct{}
	wg   sync.WaitGroup
	// beforeOpen, when set (tests), runs just before a publish file is
	// opened: a test swaps the file there, as a hostile writer racing
	// the ingest would.
	beforeOpen atomic.Pointer[func(path string)]
}

// Start creates the directory, ingests the files already there and
// watches it for more until Stop.
func Start(o Options) (*Dir, error) {
	dir := o.Path
	for _, d := range []string{dir, filepath.Join(dir, DoneDir), filepath.Join(dir, RejectedDir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("publish dir: create %s: %w", d, err)
		}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("publish dir: watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("publish dir: watch %s: %w", dir, err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pd := &Dir{o: o, log: log, w: w, quit: make(chan struct{})}
	// Ingest what is already there before Start returns; files written
	// meanwhile arrive as events too and are ingested after.
	pd.scan()
	pd.wg.Add(1)
	go pd.loop()
	log.Info("watching publish directory", "path", dir)
	return pd, nil
}

// Stop stops watching and waits for an ingest under way.
func (pd *Dir) Stop() {
	close(pd.quit)
	pd.w.Close()
	pd.wg.Wait()
}

// eligible says whether a directory entry name is a publish file.
func eligible(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".json") && len(name) > len(".json")
}

func (pd *Dir) scan() {
	entries, err := os.ReadDir(pd.o.Path)
	if err != nil {
		pd.log.Error("publish dir: scan", "path", pd.o.Path, "err", err)
		return
	}
	for _, e := range entries {
		if eligible(e.Name()) && !e.IsDir() {
			pd.ingest(e.Name())
		}
	}
}

func (pd *Dir) loop() {
	defer pd.wg.Done()
	pending := map[string]bool{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-pd.quit:
			return
		case ev, ok := <-pd.w.Events:
			if !ok {
				return
			}
			name := filepath.Base(ev.Name)
			if filepath.Dir(ev.Name) != filepath.Clean(pd.o.Path) || !eligible(name) {
				continue
			}
			if ev.Op&(fsnotify.Create|fsnotify.Write) == 0 {
				continue
			}
			pending[name] = true
			timer.Reset(debounce)
		case err, ok := <-pd.w.Errors:
			if !ok {
				return
			}
			pd.log.Error("publish dir: watcher", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				pd.scan()
			}
		case <-timer.C:
			names := make([]string, 0, len(pending))
			for n := range pending {
				names = append(names, n)
			}
			clear(pending)
			sort.Strings(names)
			for _, n := range names {
				select {
				case <-pd.quit:
					return
				default:
				}
				pd.ingest(n)
			}
		}
	}
}

// ingest applies one publish file, all or nothing, then moves it to done/
// or rejected/ (with <name>.error beside it).
func (pd *Dir) ingest(name string) {
	log := pd.log.With("path", name)
	path := filepath.Join(pd.o.Path, name)
	if h := pd.beforeOpen.Load(); h != nil {
		(*h)(path)
	}
	data, e, err := readFile(path, name, pd.o.MaxFileBytes)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errIsDir) {
		return
	}
	if err != nil {
		log.Error("publish dir: read, leaving the file", "err", err)
		return
	}
	if e != nil {
		pd.reject(name, e)
		return
	}
	id, f, e := parse(name, data)
	if e != nil {
		pd.reject(name, e)
		return
	}
	gen, err := pd.o.Apply(context.Background(), id, f)
	if err != nil {
		var r Rejection
		if !errors.As(err, &r) || r.HTTPStatus() >= 500 {
			log.Error("publish dir: apply, leaving the file for the next start", "err", err)
			return
		}
		pd.reject(name, r)
		return
	}
	if err := os.Rename(path, filepath.Join(pd.o.Path, DoneDir, name)); err != nil {
		log.Error("publish dir: move to done", "err", err)
		return
	}
	log.Info("publish dir: ingested", "instance", id, "generation", gen)
}

// refusal is a Rejection of the publish directory's own.
type refusal struct {
	status int
	body   api.Error
}

func refuse(status int, format string, args ...any) *refusal {
	return &refusal{status: status, body: api.Error{Error: fmt.Sprintf(format, args...)}}
}

func (r *refusal) Error() string        { return r.body.Error }
func (r *refusal) HTTPStatus() int      { return r.status }
func (r *refusal) ErrorBody() api.Error { return r.body }

// errIsDir says a publish file name is a directory (left alone).
var errIsDir = errors.New("is a directory")

// readFile reads the publish file at path without trusting what a
// directory entry said about it a moment ago: it opens the name without
// following a symbolic link and without blocking on a FIFO, checks the
// open file (a regular file, at most max bytes) and reads at most one
// byte past the cap, so a file swapped for a link, a FIFO, a device or a
// growing file between the event and the open is rejected, never
// followed, waited on or read without bound. A file to reject comes back
// as the refusal its .error file holds; err is a failure to read a file
// that may be fine (the file is left for the next start).
func readFile(path, name string, max int) ([]byte, *refusal, error) {
	notRegular := refuse(http.StatusBadRequest, "publish file %s is not a regular file", name)
	tooLarge := refuse(http.StatusRequestEntityTooLarge, "publish file %s exceeds %d bytes", name, max)
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		// A symbolic link fails to open (ELOOP), so does a socket (ENXIO):
		// say so rather than leave them for ever. The Lstat only names
		// the failure; nothing is read after it.
		if fi, lerr := os.Lstat(path); lerr == nil && !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil, notRegular, nil
		}
		return nil, nil, fmt.Errorf("open publish file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("stat publish file %s: %w", path, err)
	case fi.IsDir():
		return nil, nil, fmt.Errorf("publish file %s: %w", path, errIsDir)
	case !fi.Mode().IsRegular():
		return nil, notRegular, nil
	case fi.Size() > int64(max):
		return nil, tooLarge, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read publish file %s: %w", path, err)
	}
	if len(data) > max {
		return nil, tooLarge, nil
	}
	return data, nil, nil
}

// parse decodes a publish file strictly: one JSON object, no unknown
// fields, no trailing data, and something to apply.
func parse(name string, data []byte) (string, api.PublishFile, *refusal) {
	var pf api.PublishFile
	id := strings.TrimSuffix(name, ".json")
	if !api.ValidInstanceID(id) {
		return id, pf, refuse(http.StatusBadRequest, "invalid instance id %q (from the file name): must match %s", id, api.InstanceIDPattern)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&pf)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		return id, pf, refuse(http.StatusBadRequest, "invalid publish file: %v", err)
	}
	if string(pf.Config) == "null" {
		pf.Config = nil
	}
	if len(pf.Addresses) == 0 && pf.HostInterface == "" && len(pf.Config) == 0 {
		return id, pf, refuse(http.StatusBadRequest, "publish file has neither addresses/hostInterface nor config")
	}
	return id, pf, nil
}

// reject moves name to rejected/, writing the error object e beside it
// first.
func (pd *Dir) reject(name string, e Rejection) {
	if pd.o.OnReject != nil {
		pd.o.OnReject()
	}
	log := pd.log.With("path", name)
	rej := filepath.Join(pd.o.Path, RejectedDir)
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // as the admin API answers
	if err := enc.Encode(e.ErrorBody()); err != nil {
		log.Error("publish dir: encode error", "err", err)
		return
	}
	tmp := filepath.Join(rej, "."+name+".error.tmp")
	if err := os.WriteFile(tmp, body.Bytes(), 0o640); err != nil {
		log.Error("publish dir: write error file", "err", err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(rej, name+".error")); err != nil {
		log.Error("publish dir: write error file", "err", err)
		return
	}
	if err := os.Rename(filepath.Join(pd.o.Path, name), filepath.Join(rej, name)); err != nil {
		log.Error("publish dir: move to rejected", "err", err)
		return
	}
	log.Warn("publish dir: rejected", "status", e.HTTPStatus(), "err", e.Error())
}
