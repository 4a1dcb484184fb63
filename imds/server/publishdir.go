package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
)

// Subdirectories of the publish directory.
const (
	DoneDir     = "done"
	RejectedDir = "rejected"
)

// publishDebounce gathers the events of one write before ingesting.
const publishDebounce = 20 * time.Millisecond

// maxPublishFileBytes bounds a publish file: a full document plus a large
// registration.
const maxPublishFileBytes = config.MaxDocumentBytes + maxRegistrationBytes

// publishDir ingests DIR/<id>.json files (PROTOCOL.md section 3).
type publishDir struct {
	s    *Server
	dir  string
	w    *fsnotify.Watcher
	quit chan struct{}
	wg   sync.WaitGroup
	// beforeOpen, when set (tests), runs just before a publish file is
	// opened: a test swaps the file there, as a hostile writer racing
	// the ingest would.
	beforeOpen atomic.Pointer[func(path string)]
}

func startPublishDir(s *Server, dir string) (*publishDir, error) {
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
	pd := &publishDir{s: s, dir: dir, w: w, quit: make(chan struct{})}
	// Ingest what is already there before New returns; files written
	// meanwhile arrive as events too and are ingested after.
	pd.scan()
	pd.wg.Add(1)
	go pd.loop()
	s.log.Info("watching publish directory", "path", dir)
	return pd, nil
}

func (pd *publishDir) stop() {
	close(pd.quit)
	pd.w.Close()
	pd.wg.Wait()
}

// eligible says whether a directory entry name is a publish file.
func eligible(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".json") && len(name) > len(".json")
}

func (pd *publishDir) scan() {
	entries, err := os.ReadDir(pd.dir)
	if err != nil {
		pd.s.log.Error("publish dir: scan", "path", pd.dir, "err", err)
		return
	}
	for _, e := range entries {
		if eligible(e.Name()) && !e.IsDir() {
			pd.ingest(e.Name())
		}
	}
}

func (pd *publishDir) loop() {
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
			if filepath.Dir(ev.Name) != filepath.Clean(pd.dir) || !eligible(name) {
				continue
			}
			if ev.Op&(fsnotify.Create|fsnotify.Write) == 0 {
				continue
			}
			pending[name] = true
			timer.Reset(publishDebounce)
		case err, ok := <-pd.w.Errors:
			if !ok {
				return
			}
			pd.s.log.Error("publish dir: watcher", "err", err)
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
func (pd *publishDir) ingest(name string) {
	log := pd.s.log.With("path", name)
	path := filepath.Join(pd.dir, name)
	if h := pd.beforeOpen.Load(); h != nil {
		(*h)(path)
	}
	data, e, err := readPublishFile(path, name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errPublishDir) {
		return
	}
	if err != nil {
		log.Error("publish dir: read, leaving the file", "err", err)
		return
	}
	if e != nil {
		pd.s.m.rejects.WithLabelValues("publish-dir").Inc()
		pd.reject(name, e)
		return
	}
	c, e := parsePublishFile(name, data)
	if e != nil {
		pd.s.m.rejects.WithLabelValues("publish-dir").Inc()
		pd.reject(name, e)
		return
	}
	id := strings.TrimSuffix(name, ".json")
	rec, _, err := pd.s.apply(context.Background(), id, c)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Status >= 500 {
			log.Error("publish dir: apply, leaving the file for the next start", "err", err)
			return
		}
		pd.s.m.rejects.WithLabelValues("publish-dir").Inc()
		pd.reject(name, storeError(id, err))
		return
	}
	if err := os.Rename(path, filepath.Join(pd.dir, DoneDir, name)); err != nil {
		log.Error("publish dir: move to done", "err", err)
		return
	}
	log.Info("publish dir: ingested", "instance", id, "generation", rec.Generation)
}

// errPublishDir says a publish file name is a directory (left alone).
var errPublishDir = errors.New("is a directory")

// readPublishFile reads the publish file at path without trusting what a
// directory entry said about it a moment ago: it opens the name without
// following a symbolic link and without blocking on a FIFO, checks the
// open file (a regular file, at most maxPublishFileBytes) and reads at
// most one byte past the cap, so a file swapped for a link, a FIFO, a
// device or a growing file between the event and the open is rejected,
// never followed, waited on or read without bound. A file to reject
// comes back as the *Error its .error file holds; err is a failure to
// read a file that may be fine (the file is left for the next start).
func readPublishFile(path, name string) ([]byte, *Error, error) {
	notRegular := errorf(http.StatusBadRequest, "publish file %s is not a regular file", name)
	tooLarge := errorf(http.StatusRequestEntityTooLarge, "publish file %s exceeds %d bytes", name, maxPublishFileBytes)
	f, err := os.OpenFile(path, os.O_RDONLY|publishOpenFlags, 0)
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
		return nil, nil, fmt.Errorf("publish file %s: %w", path, errPublishDir)
	case !fi.Mode().IsRegular():
		return nil, notRegular, nil
	case fi.Size() > maxPublishFileBytes:
		return nil, tooLarge, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPublishFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read publish file %s: %w", path, err)
	}
	if len(data) > maxPublishFileBytes {
		return nil, tooLarge, nil
	}
	return data, nil, nil
}

// parsePublishFile turns a publish file into one store change.
func parsePublishFile(name string, data []byte) (store.Change, *Error) {
	var c store.Change
	id := strings.TrimSuffix(name, ".json")
	if !ValidID(id) {
		return c, errorf(http.StatusBadRequest, "invalid instance id %q (from the file name): must match %s", id, api.InstanceIDPattern)
	}
	var pf api.PublishFile
	if err := decodeStrict(data, &pf); err != nil {
		return c, errorf(http.StatusBadRequest, "invalid publish file: %v", err)
	}
	if len(pf.Addresses) > 0 || pf.HostInterface != "" {
		reg, e := checkRegistration(api.Registration{Addresses: pf.Addresses, HostInterface: pf.HostInterface, Labels: pf.Labels})
		if e != nil {
			return c, e
		}
		c.Register = &reg
	}
	if len(pf.Config) > 0 && string(pf.Config) != "null" {
		doc, e := decodeConfig(pf.Config)
		if e != nil {
			return c, e
		}
		c.Publish = stamper(doc)
	}
	if c.Register == nil && c.Publish == nil {
		return c, errorf(http.StatusBadRequest, "publish file has neither addresses/hostInterface nor config")
	}
	return c, nil
}

func (pd *publishDir) reject(name string, e *Error) {
	log := pd.s.log.With("path", name)
	rej := filepath.Join(pd.dir, RejectedDir)
	body, err := marshal(e.Body)
	if err != nil {
		log.Error("publish dir: encode error", "err", err)
		return
	}
	tmp := filepath.Join(rej, "."+name+".error.tmp")
	if err := os.WriteFile(tmp, body, 0o640); err != nil {
		log.Error("publish dir: write error file", "err", err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(rej, name+".error")); err != nil {
		log.Error("publish dir: write error file", "err", err)
		return
	}
	if err := os.Rename(filepath.Join(pd.dir, name), filepath.Join(rej, name)); err != nil {
		log.Error("publish dir: move to rejected", "err", err)
		return
	}
	log.Warn("publish dir: rejected", "status", e.Status, "err", e.Error())
}
