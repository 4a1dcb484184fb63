package controller

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestClaimReserveFailureRollsBack: the tenant reservation runs beside the
// registration, the publish and the re-map; when it fails the claim fails
// naming it, and the VM it took is destroyed with everything done for it
// (domain, IMDS instance, tenant registration), and replaced.
func TestClaimReserveFailureRollsBack(t *testing.T) {
	h := start(t, testConfig(t, 1), func(hv *fakeHV) {
		hv.addHostErr = map[string]error{"tenant-a": errors.New("network update refused")}
	})
	st := h.waitFor("1 warm VM", warm(1))
	taken := st.VMs[0].Name
	_, err := h.c.Claim(context.Background(), ClaimRequest{Flavor: "small", ClaimID: "r", Document: json.RawMessage(tenantDoc)})
	if err == nil || !strings.Contains(err.Error(), "reserve tenant address") || !strings.Contains(err.Error(), "network update refused") {
		t.Fatalf("err = %v, want the reservation's error", err)
	}
	if _, _, ok := h.hv.domain(taken); ok {
		t.Errorf("the claimed VM %s is still defined after the rollback", taken)
	}
	if _, ok := h.hv.imds.Instance(taken); ok {
		t.Errorf("the claimed VM %s is still registered with the IMDS", taken)
	}
	h.hv.mu.Lock()
	tenant := len(h.hv.hosts["tenant-a"])
	h.hv.mu.Unlock()
	if tenant != 0 {
		t.Errorf("%d tenant reservations left, want none", tenant)
	}
	st = h.waitFor("a replacement warm VM", warm(1))
	for _, v := range st.VMs {
		if v.Name == taken || v.ClaimID != "" {
			t.Errorf("after the rollback: %+v", v)
		}
	}
}
