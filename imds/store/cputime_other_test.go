//go:build !unix

package store

import "time"

// cpuTime is 0 where getrusage is missing: the metric is left out.
func cpuTime() time.Duration { return 0 }
