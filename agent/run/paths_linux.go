package run

import (
	"io/fs"
	"maps"
)

// Paths is the table of where each command may live, first match wins. It
// is the only place that names a Linux command's path: a command lives in
// /usr/sbin or /usr/bin, else in /sbin or /bin (a system whose root
// directories are not merged into /usr); ip also in /bin (older Debian).
var Paths = table(
	usrThenRoot("sbin", "useradd", "usermod", "groupadd", "chpasswd", "visudo", "dhclient", "dhcpcd"),
	usrThenRoot("bin", "hostnamectl", "timedatectl", "networkctl", "resolvectl", "nmcli", "busybox", "ssh-keygen", "systemctl"),
	map[string][]string{"ip": {"/usr/sbin/ip", "/sbin/ip", "/bin/ip"}},
)

// usrThenRoot places each of names in /usr/dir/NAME, else /dir/NAME.
func usrThenRoot(dir string, names ...string) map[string][]string {
	m := make(map[string][]string, len(names))
	for _, n := range names {
		m[n] = []string{"/usr/" + dir + "/" + n, "/" + dir + "/" + n}
	}
	return m
}

// table merges parts into one table.
func table(parts ...map[string][]string) map[string][]string {
	out := map[string][]string{}
	for _, p := range parts {
		maps.Copy(out, p)
	}
	return out
}

func candidates(name string) []string { return Paths[name] }

func executable(m fs.FileMode) bool { return m&0o111 != 0 }
