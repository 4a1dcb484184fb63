//go:build !linux

package promtext

// registerProcess registers nothing off Linux: the process figures come
// from /proc.
func registerProcess(*Registry) {}
