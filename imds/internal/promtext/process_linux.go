package promtext

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// userHZ is the kernel's USER_HZ, the unit of /proc/PID/stat's times: 100
// on every Linux architecture Go supports (as client_golang's procfs
// assumes).
const userHZ = 100

func registerProcess(r *Registry) {
	r.CounterFunc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", func() float64 {
		f := procStat()
		if len(f) < 15 {
			return 0
		}
		return (atof(f[13]) + atof(f[14])) / userHZ // utime, stime
	})
	r.GaugeFunc("process_resident_memory_bytes", "Resident memory size in bytes.", func() float64 {
		f := procStat()
		if len(f) < 24 {
			return 0
		}
		return atof(f[23]) * float64(os.Getpagesize())
	})
	r.GaugeFunc("process_virtual_memory_bytes", "Virtual memory size in bytes.", func() float64 {
		f := procStat()
		if len(f) < 23 {
			return 0
		}
		return atof(f[22])
	})
	r.GaugeFunc("process_open_fds", "Number of open file descriptors.", func() float64 {
		d, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return 0
		}
		return float64(len(d))
	})
	r.GaugeFunc("process_max_fds", "Maximum number of open file descriptors.", func() float64 {
		var l syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
			return 0
		}
		return float64(l.Cur)
	})
	r.GaugeFunc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", func() float64 {
		f := procStat()
		if len(f) < 22 {
			return 0
		}
		return bootTime() + atof(f[21])/userHZ
	})
}

// procStat is /proc/self/stat split into fields, numbered from 0 as in
// proc(5) minus one (field 14, utime, is f[13]); the command name, which may
// hold spaces, is skipped by cutting after its closing parenthesis.
func procStat() []string {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return append([]string{"pid", "comm"}, strings.Fields(string(b[i+1:]))...)
}

// bootTime is the btime line of /proc/stat: the boot, in seconds since
// the epoch.
func bootTime() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			return atof(strings.TrimSpace(v))
		}
	}
	return 0
}

func atof(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}
