// Package system applies the hostname, timezone and users steps on Linux.
// Every file it writes is relative to a target root and written atomically;
// every external command (useradd, usermod, groupadd, chpasswd, visudo,
// hostnamectl, timedatectl) goes through one runner. Each step is an ensure
// operation: run twice, the second run changes nothing.
//
// The users step manages only accounts the agent created (recorded in
// users.json in the state directory inside the target root) or that the
// image builder listed (Options.ManageExistingUsers), and never an account
// of a system uid range of the target's login.defs or nobody.
package system
