package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ProbeInterval is how long Probe reuses its last result.
const ProbeInterval = 5 * time.Second

// MinFreeBytes is the free space below which Probe says the store cannot
// write: a bbolt write that needs a new page fails when the filesystem is
// full even though a probe that rewrites a freed page succeeds.
const MinFreeBytes = 1 << 20

// probeState is the cached result of Probe, also set by a failed write.
type probeState struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

func (p *probeState) failed(err error) {
	p.mu.Lock()
	p.at, p.err = time.Now(), err
	p.mu.Unlock()
}

// Probe reports whether the store can take a write now: nil, or why not.
// It writes a small key in the store's meta bucket and checks that the
// filesystem has at least MinFreeBytes free, at most once per
// ProbeInterval (in between it returns the last result). A write of the
// store that failed makes it fail at once, until the next probe passes.
func (s *Bolt) Probe(ctx context.Context) error {
	s.probe.mu.Lock()
	defer s.probe.mu.Unlock()
	if !s.probe.at.IsZero() && time.Since(s.probe.at) < ProbeInterval {
		return s.probe.err
	}
	err := s.probeOnce(ctx)
	s.probe.at, s.probe.err = time.Now(), err
	return err
}

func (s *Bolt) probeOnce(ctx context.Context) error {
	release, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer release()
	now, _ := time.Now().UTC().MarshalText()
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kProbe, now) })
	if err != nil {
		return fmt.Errorf("write probe of store %s: %w", s.path, err)
	}
	if err := s.reportsDown(); err != nil {
		return err
	}
	free, err := freeBytes(filepath.Dir(s.path))
	if err != nil {
		return fmt.Errorf("free space of store %s: %w", s.path, err)
	}
	if free < MinFreeBytes {
		return fmt.Errorf("store %s: its filesystem has %d bytes free, less than %d: writes fail once the file must grow", s.path, free, MinFreeBytes)
	}
	return nil
}
