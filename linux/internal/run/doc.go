// Package run is the one seam through which the Linux platform runs external
// commands (useradd, chpasswd, hostnamectl, dhclient...). The paths of every
// command live here, in one table; tests replace the Runner with a fake.
package run
