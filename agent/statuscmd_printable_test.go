package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// TestStatusTextPrintable: a link event's error (a DHCP client's text) and
// the report's error reach the terminal without their control characters:
// `prewarm-agent status` and --follow print them escaped, as the IMDS's
// CLI does.
func TestStatusTextPrintable(t *testing.T) {
	const hostile = "renew failed\x1b[2J\x1b]0;owned\x07\r\nnext"
	at := status.Time{Time: time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)}
	r := status.Report{Seq: 3, Time: at, Generation: 2, State: status.StateProvisioned, Event: status.LinkRenewed, Interface: "eth0",
		LinkEvents: []status.LinkEvent{{Time: at, Kind: status.LinkRenewed, Interface: "eth0", Client: "dhclient", Error: hostile}},
		Error:      hostile}
	for name, out := range map[string]string{"status": formatReport(&r), "--follow": formatLine(&r)} {
		body := strings.TrimSuffix(out, "\n")
		if name == "status" {
			body = strings.ReplaceAll(body, "\n", "")
		}
		if i := strings.IndexFunc(body, func(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f }); i >= 0 {
			t.Errorf("%s: control character %q at %d in %q", name, body[i], i, out)
		}
		if !strings.Contains(out, `renew failed\x1b[2J`) {
			t.Errorf("%s: the error is not shown escaped: %q", name, out)
		}
	}
}
