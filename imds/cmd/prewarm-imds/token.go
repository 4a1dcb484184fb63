package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// minAdminTokenBytes is the shortest bearer token serve accepts for
// --admin-listen: 32 bytes (256 bits when random, e.g. from
// "openssl rand -hex 32").
const minAdminTokenBytes = 32

// maxAdminTokenFileBytes bounds how much of the token file is read.
const maxAdminTokenFileBytes = 4096

// readAdminToken reads the bearer token of --admin-listen from path (one
// line; surrounding whitespace is dropped). It refuses, naming the file
// and the rule, a file that group or others may read or write (on Unix:
// mode 0600 or stricter, as ssh asks of a private key; Windows ACLs are
// not checked), and a token shorter than minAdminTokenBytes or holding
// anything but printable ASCII without spaces, so that a token others can
// read or guess stops the start instead of guarding the admin API.
func readAdminToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read admin token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read admin token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("admin token file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return "", fmt.Errorf("admin token file %s: mode %04o lets group or others read or write it: it must be 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxAdminTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("read admin token file %s: %w", path, err)
	}
	if len(b) > maxAdminTokenFileBytes {
		return "", fmt.Errorf("admin token file %s: larger than %d bytes: it must hold the token alone", path, maxAdminTokenFileBytes)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin token file %s is empty", path)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return "", fmt.Errorf("admin token file %s: byte %d of the token is 0x%02x: a token must be printable ASCII without spaces", path, i, c)
		}
	}
	if len(token) < minAdminTokenBytes {
		return "", fmt.Errorf("admin token file %s: the token is %d bytes: it must be at least %d bytes (e.g. openssl rand -hex 32)", path, len(token), minAdminTokenBytes)
	}
	return token, nil
}
