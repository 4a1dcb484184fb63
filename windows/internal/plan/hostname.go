package plan

import (
	"errors"
	"fmt"
	"strings"
)

// MaxComputerNameLen is the longest name Windows accepts as a computer
// name: its NetBIOS name is the first label, and NetBIOS names have 15
// characters.
const MaxComputerNameLen = 15

// ErrHostnameTooLong is returned for a hostname whose first label is longer
// than MaxComputerNameLen.
var ErrHostnameTooLong = errors.New("first label longer than 15 characters, too long for a Windows computer name")

// ErrBadHostname is returned for a hostname Windows cannot take.
var ErrBadHostname = errors.New("invalid Windows computer name")

// ComputerName returns the name Windows applies for hostname: its first
// label, checked against Windows' rules.
func ComputerName(hostname string) (string, error) {
	label, _, _ := strings.Cut(hostname, ".")
	switch {
	case label == "":
		return "", fmt.Errorf("hostname %q: %w: empty first label", hostname, ErrBadHostname)
	case len(label) > MaxComputerNameLen:
		return "", fmt.Errorf("hostname %q: %q is %d characters: %w", hostname, label, len(label), ErrHostnameTooLong)
	case label[0] == '-' || label[len(label)-1] == '-':
		return "", fmt.Errorf("hostname %q: %w: label starts or ends with '-'", hostname, ErrBadHostname)
	}
	digits := true
	for _, c := range label {
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
			digits = false
		default:
			return "", fmt.Errorf("hostname %q: %w: character %q", hostname, ErrBadHostname, c)
		}
	}
	if digits {
		// Windows refuses an all-numeric computer name.
		return "", fmt.Errorf("hostname %q: %w: all digits", hostname, ErrBadHostname)
	}
	return label, nil
}

// Hostname decides the hostname step. active is the name the machine runs
// with, pending the one it will have after a restart ("" if none is set
// apart from the active one). set says whether to call SetComputerNameEx;
// reboot whether the step must report that a restart is required (also
// when an earlier run set the name and the machine was not restarted yet).
// Windows compares computer names without regard to case.
func Hostname(active, pending, want string) (set, reboot bool) {
	if pending == "" {
		pending = active
	}
	set = !strings.EqualFold(pending, want)
	reboot = !strings.EqualFold(active, want)
	return set, reboot
}
