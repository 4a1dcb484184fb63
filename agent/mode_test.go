package agent

import (
	"io/fs"
	"runtime"
)

// wantMode is the permission bits os.Stat reports for a file the agent
// makes with the Unix mode unix: Windows has no mode bits, and Go reports
// 0666 for a writable file and 0444 for a read-only one (os package docs).
func wantMode(unix fs.FileMode) fs.FileMode {
	if runtime.GOOS != "windows" {
		return unix
	}
	if unix&0o200 != 0 {
		return 0o666
	}
	return 0o444
}
