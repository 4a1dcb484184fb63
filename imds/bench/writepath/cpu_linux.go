package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

func cpuNow() cpu {
	var ru syscall.Rusage
	var c cpu
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", *pid)); err == nil {
		// Fields after the command's closing parenthesis: utime and
		// stime are the 12th and 13th, in clock ticks (USER_HZ, 100).
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				var ut, st int64
				fmt.Sscan(f[11], &ut)
				fmt.Sscan(f[12], &st)
				c.server = time.Duration(ut+st) * 10 * time.Millisecond
			}
		}
	}
	return c
}
