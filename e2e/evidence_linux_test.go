package e2e

import (
	"strings"
	"testing"
)

// TestBounceSeenAtOutcome: the claim's evidence is the eth0 counter of
// the agent's last "links checked" line before the claim against the last
// one before its provisioned report; missing evidence counts as seen.
func TestBounceSeenAtOutcome(t *testing.T) {
	check := func(changes string) string {
		return `time=x level=DEBUG msg="links checked" component=netmon behind=false undelivered=0 links="eth0:changes=` + changes + `:up=true"`
	}
	prov := `time=x level=INFO msg=report component=agent seq=9 state=provisioned generation=2 event="" err=""`
	for _, c := range []struct {
		name  string
		lines []string
		from  int
		seen  bool
	}{
		{"not yet seen", []string{check("3"), "claim starts", check("3"), prov, check("5")}, 1, false},
		{"seen", []string{check("3"), "claim starts", check("3"), check("5"), prov}, 1, true},
		{"partial-ready's check only", []string{check("2"), check("3"), "claim starts", prov}, 2, true},
		{"no line before the claim", []string{"claim starts", check("3"), prov}, 0, true},
		{"zero counters", []string{check("0"), "claim starts", check("0"), prov}, 1, true},
		{"an event report of the generation is not the outcome", []string{check("3"), "claim starts", check("3"),
			strings.Replace(prov, `event=""`, "event=carrier-lost", 1), check("5"), prov}, 1, true},
		{"other generation's outcome", []string{check("3"), "claim starts", check("3"),
			strings.Replace(prov, "generation=2", "generation=1", 1), check("5"), prov}, 1, true},
	} {
		seen, ev := bounceSeenAtOutcome(c.lines, c.from, 2)
		if seen != c.seen {
			t.Errorf("%s: seen %v (%s), want %v", c.name, seen, ev, c.seen)
		}
	}
}
