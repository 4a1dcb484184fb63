package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/internal/winetest"
)

// TestWriteWhileReaderHoldsTheFile: a reader that holds the file open for
// a moment (shared for delete, as prewarm-agent status reads status.json)
// does not fail the write: Windows (and Wine, for any reader) refuses the
// replacing rename while the handle is open, and Write tries again.
func TestWriteWhileReaderHoldsTheFile(t *testing.T) {
	p := filepath.Join(winetest.TempDir(t), "status.json")
	if err := Write(p, []byte("old"), Options{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	name, _ := windows.UTF16PtrFromString(p)
	h, err := windows.CreateFile(name, windows.GENERIC_READ,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil, windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		windows.CloseHandle(h)
		close(released)
	}()
	err = Write(p, []byte("new"), Options{Mode: 0o644})
	<-released
	if err != nil {
		t.Fatalf("write while a reader held the file for 50 ms: %v", err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "new" {
		t.Errorf("content %q, %v; want new", b, err)
	}
}
