package plan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prewarm/prewarm/shared/config"
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
// label. The name must be a host name by the document's own rule
// (config.ValidHostname, checked again for a name that never went through
// validation); on top, Windows takes at most MaxComputerNameLen characters
// and no all-numeric computer name.
func ComputerName(hostname string) (string, error) {
	if !config.ValidHostname(hostname) {
		return "", fmt.Errorf("hostname %q: %w: not a host name by the document's rules (RFC 1123 labels of [a-z0-9-], not an IP literal)", hostname, ErrBadHostname)
	}
	label, _, _ := strings.Cut(hostname, ".")
	if len(label) > MaxComputerNameLen {
		return "", fmt.Errorf("hostname %q: %q is %d characters: %w", hostname, label, len(label), ErrHostnameTooLong)
	}
	if strings.Trim(label, "0123456789") == "" {
		// Windows refuses an all-numeric computer name.
		return "", fmt.Errorf("hostname %q: %w: first label all digits", hostname, ErrBadHostname)
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

// ComputerNameRule is the reason of ComputerName's error err for hostname,
// without the hostname it starts with: the rule, for a field error.
func ComputerNameRule(hostname string, err error) string {
	return strings.TrimPrefix(err.Error(), fmt.Sprintf("hostname %q: ", hostname))
}
