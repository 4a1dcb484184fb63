package store

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A store path that is not a regular file is refused at once: opening a
// FIFO to read would wait for a writer forever.
func TestOpenBoltRefusesNonRegular(t *testing.T) {
	for _, tt := range []struct {
		name string
		make func(path string) error
	}{
		{"fifo", func(path string) error { return syscall.Mkfifo(path, 0o600) }},
		{"directory", func(path string) error { return os.Mkdir(path, 0o700) }},
		{"symlink to a fifo", func(path string) error {
			fifo := filepath.Join(filepath.Dir(path), "fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				return err
			}
			return os.Symlink(fifo, path)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := tt.make(path); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				s, err := OpenBolt(dir)
				if err == nil {
					s.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				wantDamaged(t, err, path, "not a regular file")
				if tt.name == "directory" {
					return // RecoverBolt moves files, not directories
				}
				res, err := RecoverBolt(dir, false)
				if err != nil {
					t.Fatalf("recover: %v", err)
				}
				if _, err := CheckBolt(dir); err != nil || res.DamagedPath == "" {
					t.Fatalf("after recover (%+v): %v", res, err)
				}
			case <-time.After(20 * time.Second):
				// Unblock the open so the test can end.
				if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
					f.Close()
				}
				t.Fatal("OpenBolt still waiting after 20 s")
			}
		})
	}
}
