package run

import "io/fs"

// Paths is the table of where each command may live, first match wins. It
// is the only place that names a Linux command's path.
var Paths = map[string][]string{
	"useradd":     {"/usr/sbin/useradd", "/sbin/useradd"},
	"usermod":     {"/usr/sbin/usermod", "/sbin/usermod"},
	"groupadd":    {"/usr/sbin/groupadd", "/sbin/groupadd"},
	"chpasswd":    {"/usr/sbin/chpasswd", "/sbin/chpasswd"},
	"visudo":      {"/usr/sbin/visudo", "/sbin/visudo"},
	"hostnamectl": {"/usr/bin/hostnamectl", "/bin/hostnamectl"},
	"timedatectl": {"/usr/bin/timedatectl", "/bin/timedatectl"},
	"networkctl":  {"/usr/bin/networkctl", "/bin/networkctl"},
	"resolvectl":  {"/usr/bin/resolvectl", "/bin/resolvectl"},
	"nmcli":       {"/usr/bin/nmcli", "/bin/nmcli"},
	"dhclient":    {"/usr/sbin/dhclient", "/sbin/dhclient"},
	"dhcpcd":      {"/usr/sbin/dhcpcd", "/sbin/dhcpcd"},
	"busybox":     {"/usr/bin/busybox", "/bin/busybox"},
	"ip":          {"/usr/sbin/ip", "/sbin/ip", "/bin/ip"},
	"ssh-keygen":  {"/usr/bin/ssh-keygen", "/bin/ssh-keygen"},
	"systemctl":   {"/usr/bin/systemctl", "/bin/systemctl"},
}

func candidates(name string) []string { return Paths[name] }

func executable(m fs.FileMode) bool { return m&0o111 != 0 }
