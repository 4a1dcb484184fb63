package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVMHarness boots the VM with a trivial init (no agent): DHCP through
// the tap, and the short bounce of HARNESS.md seen as eth0's carrier
// counter rising by 2. PREWARM_E2E_VM=full or =harness runs it.
func TestVMHarness(t *testing.T) {
	if m := VMMode(); m != "full" && m != "harness" {
		t.Skip("e2e VM: the VM harness self-test runs with PREWARM_E2E_VM=full or =harness")
	}
	RequireVM(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vl := StartVMLab(t, ctx, false, nil)
	if _, _, err := vl.ConsoleWait(ctx, 0, "PWE lease eth0 "+vl.NIC0.Addr1.String()); err != nil {
		t.Fatal(err)
	}
	t.Logf("VM: lease %v after QEMU start", time.Since(vl.Boot).Round(time.Millisecond))
	_, i, err := vl.ConsoleWait(ctx, 0, "PWE carrier_changes=")
	if err != nil {
		t.Fatal(err)
	}
	before := carrierChanges(vl.VM.QEMU.Log.Lines()[i])
	from := vl.VM.QEMU.Log.Len()
	up, err := vl.ShortBounce(300 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The poller in the VM reads sysfs, which changes at once (it may see
	// the carrier off); the rate limit is on the netlink notices.
	want := "PWE carrier_changes=" + strconv.Itoa(before+2) + " carrier=1"
	line, _, err := vl.ConsoleWait(ctx, from, want)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VM: after the short bounce %q (%v after set_link on)", line, time.Since(up).Round(time.Millisecond))
}

func carrierChanges(line string) int {
	s := line[strings.Index(line, "carrier_changes=")+len("carrier_changes="):]
	n, _ := strconv.Atoi(strings.Fields(s)[0])
	return n
}
