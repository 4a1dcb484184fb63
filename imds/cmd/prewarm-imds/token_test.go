package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// serve refuses to start with an admin token file that others may read,
// or with a token short enough to guess; the error names the file and
// the rule.
func TestServeAdminTokenFile(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 4) // 64 bytes
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		errText []string // all in the error; none: serve gets past the token
	}{
		{"world readable", long + "\n", 0o644, []string{"mode 0644", "group or others", "0600 or stricter"}},
		{"group readable", long, 0o640, []string{"mode 0640", "0600 or stricter"}},
		{"group writable", long, 0o620, []string{"mode 0620", "0600 or stricter"}},
		{"short token", "s3cret-token\n", 0o600, []string{"12 bytes", "at least 32 bytes"}},
		{"31 bytes", strings.Repeat("x", 31), 0o400, []string{"31 bytes", "at least 32 bytes"}},
		{"token with a space", strings.Repeat("x", 20) + " " + strings.Repeat("y", 20), 0o600, []string{"printable ASCII"}},
		{"empty", "\n", 0o600, []string{"empty"}},
		{"32 bytes, owner only", strings.Repeat("x", 32) + "\n", 0o600, nil},
		{"read-only owner", long, 0o400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if runtime.GOOS == "windows" && tt.mode&0o077 != 0 {
				t.Skip("file mode bits are not checked on Windows")
			}
			dir := t.TempDir()
			tok := filepath.Join(dir, "admin.token")
			if err := os.WriteFile(tok, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(tok, tt.mode); err != nil { // not filtered by the umask
				t.Fatal(err)
			}
			// The data directory cannot be made (its parent is a file): a
			// token that passes gets as far as opening the store, and no
			// further.
			code, _, errText := runCmd("serve", "--listen", "", "--admin-socket", "", "--admin-listen", "127.0.0.1:0",
				"--admin-token-file", tok, "--data-dir", filepath.Join(tok, "data"))
			if code == 0 {
				t.Fatal("serve started")
			}
			if tt.errText == nil {
				if strings.Contains(errText, "admin token") {
					t.Fatalf("token refused: %v", errText)
				}
				return
			}
			for _, want := range append([]string{tok}, tt.errText...) {
				if !strings.Contains(errText, want) {
					t.Fatalf("error %q does not say %q", errText, want)
				}
			}
		})
	}
}
