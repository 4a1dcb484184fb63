package netlab

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var nsPID1 = regexp.MustCompile(`(?m)^NSpid:\s+\d+\s+1$`)

// ErrContainerExited: the systemd-nspawn process ended before its
// container's PID 1 was found.
var ErrContainerExited = errors.New("systemd-nspawn exited")

// ContainerPID1 finds the host PID of the PID 1 (systemd) of the container
// that nspawn, a systemd-nspawn started by StartProc, runs: a child or
// grandchild of nspawn whose PID in its own namespace is 1. It looks
// every poll until wait has passed.
func ContainerPID1(nspawn *Proc, wait, poll time.Duration) (int, error) {
	children := func(pid int) []int {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		var ps []int
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				ps = append(ps, p)
			}
		}
		return ps
	}
	deadline := time.Now().Add(wait)
	for {
		for _, c := range children(nspawn.StartedPID()) {
			for _, p := range append([]int{c}, children(c)...) {
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p)); err == nil && nsPID1.Match(b) {
					return p, nil
				}
			}
		}
		if done, _ := nspawn.Exited(); done {
			return 0, ErrContainerExited
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no container PID 1 under nspawn %d after %v", nspawn.StartedPID(), wait)
		}
		time.Sleep(poll)
	}
}
