package fsx

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenDirNoFollow(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(map[bool]string{false: "openat2", true: "fallback"}[fallback], func(t *testing.T) {
			if fallback {
				openat2 = func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }
				t.Cleanup(func() { openat2 = unix.Openat2 })
			}
			root := t.TempDir()
			outside := t.TempDir()
			for _, d := range []string{"home/alice", "var/home/bob"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			os.WriteFile(filepath.Join(root, "home/file"), nil, 0o644)
			os.Symlink(outside, filepath.Join(root, "home/mallory"))
			os.Symlink("../home/alice", filepath.Join(root, "home/rel"))

			fd, err := OpenDirNoFollow(root, "/home/alice")
			if err != nil {
				t.Fatal(err)
			}
			var st, want unix.Stat_t
			unix.Fstat(fd, &st)
			unix.Close(fd)
			unix.Stat(filepath.Join(root, "home/alice"), &want)
			if st.Ino != want.Ino || st.Dev != want.Dev {
				t.Fatal("opened another directory than home/alice")
			}
			for _, p := range []string{"/home/mallory", "/home/rel", "/home/file", "/"} {
				if fd, err := OpenDirNoFollow(root, p); !errors.Is(err, ErrNotDir) {
					unix.Close(fd)
					t.Errorf("%s: %v, want ErrNotDir", p, err)
				}
			}
			if _, err := OpenDirNoFollow(root, "/home/nobody"); !errors.Is(err, unix.ENOENT) {
				t.Errorf("missing home: %v", err)
			}
			// A symlink before the last component: /srv -> /var/home.
			// openat2 resolves it inside root; the fallback follows it as a
			// path, where /var/home/bob is (almost certainly) absent.
			os.Symlink("/var/home", filepath.Join(root, "srv"))
			fd, err = OpenDirNoFollow(root, "/srv/bob")
			if !fallback && err != nil {
				t.Fatalf("in-root symlink: %v", err)
			}
			if err == nil {
				unix.Close(fd)
			}
		})
	}
}
