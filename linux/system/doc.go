// Package system applies the hostname, timezone and users steps on Linux.
// Every file it writes is relative to a target root and written atomically;
// every external command (useradd, usermod, groupadd, chpasswd, visudo,
// hostnamectl, timedatectl) goes through one runner. Each step is an ensure
// operation: run twice, the second run changes nothing.
package system
