package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/prewarm/prewarm/shared/status"
)

// sdNotify sends state to systemd over $NOTIFY_SOCKET (sd_notify(3)); it
// does nothing when the variable is unset (not started by systemd with
// Type=notify). An address starting with "@" is in the abstract namespace,
// which Go's net package handles.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// maxStatusError bounds the failure text in STATUS= (systemctl status
// shows one line).
const maxStatusError = 200

// statusText is the agent's STATUS= line after report r: what it has
// done and what it waits for. "waiting for final config (partial,
// generation 1)", "provisioned generation 3".
func statusText(r status.Report) string {
	switch r.State {
	case status.StateStarting:
		if r.Generation > 0 {
			return fmt.Sprintf("starting (generation %d applied before)", r.Generation)
		}
		return "starting"
	case status.StateWaiting:
		return "waiting for a config from the IMDS"
	case status.StateApplying:
		return fmt.Sprintf("applying generation %d", r.Generation)
	case status.StatePartialReady:
		return fmt.Sprintf("waiting for final config (partial, generation %d)", r.Generation)
	case status.StateProvisioned:
		if r.RebootRequired {
			return fmt.Sprintf("provisioned generation %d (a reboot completes it)", r.Generation)
		}
		return fmt.Sprintf("provisioned generation %d", r.Generation)
	case status.StateFailed:
		msg := strings.Join(strings.Fields(r.Error), " ")
		if len(msg) > maxStatusError {
			msg = strings.ToValidUTF8(msg[:maxStatusError], "") + "…"
		}
		if msg == "" {
			return fmt.Sprintf("failed generation %d", r.Generation)
		}
		return fmt.Sprintf("failed generation %d: %s", r.Generation, msg)
	}
	return r.State
}
