package config

// Reboot policies of Document.Reboot: whether the agent may restart the
// machine once, during a generation, when a step takes full effect only
// after a restart (the Windows computer name; no Linux step needs one).
const (
	// RebootAllowed: the agent restarts the machine once and reports the
	// generation's outcome after the restart, the restart counted in the
	// timings (a "reboot" step).
	RebootAllowed = "allowed"
	// RebootNever, the default (the field absent): the agent never
	// restarts the machine; the outcome says rebootRequired.
	RebootNever = "never"
)

// RebootPolicy returns the document's reboot policy, RebootNever when unset.
func (d *Document) RebootPolicy() string {
	if d.Reboot == "" {
		return RebootNever
	}
	return d.Reboot
}

func checkReboot(w *walker, policy string) {
	if policy != "" && policy != RebootAllowed && policy != RebootNever {
		w.fail("reboot", "must be %q or %q (got %q)", RebootAllowed, RebootNever, policy)
	}
}
