package fsx

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// WriteJSON writes v as indented JSON to path, a record of the agent's own:
// atomically, 0600, its directory made 0700 when missing.
func WriteJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	_, err = WriteFile(path, append(b, '\n'), WriteOptions{Mode: 0o600})
	return err
}
