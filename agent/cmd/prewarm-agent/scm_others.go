//go:build !windows

package main

// runUnderSCM is Windows only: kardianos runs the service elsewhere.
func runUnderSCM(*program) (bool, error) { return false, nil }
