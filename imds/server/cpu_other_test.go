//go:build !linux

package server

import "time"

// cpuTime is 0 where getrusage is not read: benchmarks leave out their
// CPU per operation.
func cpuTime() time.Duration { return 0 }
