// Package benchkit holds what the IMDS benchmark commands share: their
// guests' loopback source addresses and the server's memory from /proc.
package benchkit

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// SrcAddr is the i-th source address of a benchmark whose guests live in
// 127.first.0.0 and up: 127.first.0.1, 127.first.0.2, ... (250 a /24, 62,500
// a second octet).
func SrcAddr(first, i int) string {
	return fmt.Sprintf("127.%d.%d.%d", first+i/62500, i/250%250, i%250+1)
}

// ProcStatus returns the lines of /proc/PID/status that start with one of
// keys (e.g. "VmRSS:"), in the file's order, each with its white space
// folded, joined by ", "; "n/a" when the file cannot be read.
func ProcStatus(pid int, keys ...string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "n/a"
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range keys {
			if strings.HasPrefix(l, k) {
				out = append(out, strings.Join(strings.Fields(l), " "))
				break
			}
		}
	}
	return strings.Join(out, ", ")
}

// ServerFlags defines the flags that name the running prewarm-imds a
// benchmark drives: -guest (its guest API address), -admin-socket and -pid
// (for ProcStatus).
func ServerFlags() (guest, socket *string, pid *int) {
	return flag.String("guest", "127.0.0.1:18080", "guest API address"),
		flag.String("admin-socket", "", "admin API socket"),
		flag.Int("pid", 0, "server pid, for RSS")
}
