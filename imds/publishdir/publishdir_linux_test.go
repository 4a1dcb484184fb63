package publishdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// A publish file that is not a regular file of at most
// testMaxBytes is moved to rejected/ beside an error file, whether
// it was there from the start or swapped in between the watcher noticing
// it and opening it: a FIFO must not hang the ingest (nor Stop), a
// symbolic link is not followed (to /dev/zero or to a file the publisher
// may not write), and an oversized file is not read whole.
func TestPublishDirHostileFiles(t *testing.T) {
	const id = "vm-x"
	const name = id + ".json"
	notRegular := "publish file " + name + " is not a regular file"
	tooLarge := fmt.Sprintf("publish file %s exceeds %d bytes", name, testMaxBytes)
	valid := `{"addresses":["10.0.0.7"],"config":{"hostname":"x"}}`
	oversized := `{"addresses":["10.0.0.7"],"config":{"userData":"` + strings.Repeat("x", testMaxBytes) + `"}}`

	tests := []struct {
		name    string
		make    func(t *testing.T, path string) // creates the hostile file at path
		errText string
	}{
		{"fifo", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}, notRegular},
		{"symlink to /dev/zero", func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}, notRegular},
		{"symlink to a regular file", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "elsewhere.json")
			if err := os.WriteFile(target, []byte(valid), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if b, err := os.ReadFile(target); err != nil || string(b) != valid {
					t.Errorf("the link's target was moved or changed: %q %v", b, err)
				}
			})
		}, notRegular},
		{"larger than the cap", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(oversized), 0o644); err != nil {
				t.Fatal(err)
			}
		}, tooLarge},
	}
	for _, tt := range tests {
		for _, swapped := range []bool{false, true} {
			label := tt.name + "/in place"
			if swapped {
				label = tt.name + "/swapped in before the open"
			}
			t.Run(label, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, name)
				tmp := filepath.Join(dir, "."+name+".hostile")
				// If the ingest blocks opening a FIFO, a writer's open
				// releases it so the test binary is not left stuck.
				unblock := func() {
					for _, p := range []string{path, filepath.Join(dir, RejectedDir, name), filepath.Join(dir, DoneDir, name)} {
						if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
							f.Close()
						}
					}
				}
				var applied atomic.Bool
				pd, stop := startTest(t, dir, func(context.Context, string, api.PublishFile) (int64, error) {
					applied.Store(true)
					return 1, nil
				})
				t.Cleanup(unblock) // before the directory's Stop
				if swapped {
					var once atomic.Bool
					hook := func(p string) {
						if p != path || !once.CompareAndSwap(false, true) {
							return
						}
						tt.make(t, tmp)
						if err := os.Rename(tmp, path); err != nil {
							t.Error(err)
						}
					}
					pd.beforeOpen.Store(&hook)
					writeAtomic(t, dir, name, valid)
				} else {
					tt.make(t, tmp)
					if err := os.Rename(tmp, path); err != nil {
						t.Fatal(err)
					}
				}

				where := waitMoved(t, dir, name)
				if where != RejectedDir {
					t.Fatalf("%s moved to %s/, want %s/", name, where, RejectedDir)
				}
				b, err := os.ReadFile(filepath.Join(dir, RejectedDir, name+".error"))
				if err != nil {
					t.Fatal(err)
				}
				var e api.Error
				if err := json.Unmarshal(b, &e); err != nil || e.Error != tt.errText {
					t.Fatalf("error file %s (%v), want the error object {\"error\": %q}", b, err, tt.errText)
				}
				if applied.Load() {
					t.Fatalf("hostile file applied for %s", id)
				}

				done := make(chan error, 1)
				go func() {
					stop()
					done <- nil
				}()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("stop: %v", err)
					}
				case <-time.After(20 * time.Second):
					unblock()
					t.Fatal("stop did not complete: the publish directory's ingest is stuck")
				}
			})
		}
	}
}

// waitMoved waits (at most 10 s) until the ingest has moved name out of
// dir and says where to: DoneDir or RejectedDir. It does not follow
// symbolic links.
func waitMoved(t *testing.T, dir, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, sub := range []string{DoneDir, RejectedDir} {
			if _, err := os.Lstat(filepath.Join(dir, sub, name)); err == nil {
				return sub
			} else if !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s was never moved to %s/ or %s/: the ingest is stuck or skipped it", name, DoneDir, RejectedDir)
		case <-tick.C:
		}
	}
}
