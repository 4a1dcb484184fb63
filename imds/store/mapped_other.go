//go:build !linux

package store

// dropPages keeps the mapping as it is off Linux (Windows maps the file
// through a view the store does not trim).
func dropPages(uintptr, int64) {}
