package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prewarm/prewarm/shared/status"
)

// ReadHostKeys lists the SSH host keys in dir, OpenSSH's layout on every OS
// (/etc/ssh, %ProgramData%\ssh): the public keys of ssh_host_*_key.pub
// whose private key is there too (sshd serves only those), parsed, in
// file-name order. A missing dir, or one without keys, is no keys.
func ReadHostKeys(dir string) ([]status.HostKey, error) {
	pubs, err := filepath.Glob(filepath.Join(dir, "ssh_host_*_key.pub"))
	if err != nil {
		return nil, fmt.Errorf("list SSH host keys in %s: %w", dir, err)
	}
	slices.Sort(pubs)
	var keys []status.HostKey
	for _, p := range pubs {
		if _, err := os.Stat(strings.TrimSuffix(p, ".pub")); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read SSH host key: %w", err)
		}
		k, err := status.ParseHostKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("SSH host key %s: %w", p, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}
