package run

import "io/fs"

// programs is the table of the Windows commands, each in the system
// directory. It is the only place that names a Windows command's file.
var programs = map[string]string{
	"tzutil": "tzutil.exe",
	"netsh":  "netsh.exe",
	// The OpenSSH server of the Windows capability (sshd's host keys).
	"ssh-keygen": `OpenSSH\ssh-keygen.exe`,
}

func candidates(name string) []string {
	if p, ok := programs[name]; ok {
		return []string{System32(p)}
	}
	return nil
}

// executable: Windows has no execute bit; a regular file will do.
func executable(fs.FileMode) bool { return true }
