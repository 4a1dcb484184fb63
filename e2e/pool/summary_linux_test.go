package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/virtlab"
)

// A failed test's summary lists its steps in order and the controller's
// warnings, errors and roll-backs/forwards (the last 25), nothing else.
func TestSummary(t *testing.T) {
	dir := t.TempDir()
	var log []string
	for i := 0; i < 30; i++ {
		log = append(log, fmt.Sprintf(`time=T level=WARN msg="warning %d" component=pool`, i))
	}
	log = append(log,
		`time=T level=INFO msg="adopted VM" component=pool`,
		`time=T level=INFO msg="rolling forward a claim whose final document is out" component=pool claimId=k`,
		`time=T level=ERROR msg="claim did not finish" component=pool`)
	if err := os.WriteFile(filepath.Join(dir, "pool.log"), []byte(strings.Join(log, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var narrated []string
	h := &Harness{Lab: &virtlab.Lab{Dir: dir}, began: time.Now(), log: func(f string, a ...any) { narrated = append(narrated, fmt.Sprintf(f, a...)) }}
	h.Step("first %d", 1)
	h.Step("second")
	s := h.Summary()
	first, second := strings.Index(s, "first 1"), strings.Index(s, "second")
	if first < 0 || second < first {
		t.Errorf("steps missing or out of order:\n%s", s)
	}
	if len(narrated) != 2 || narrated[1] != "step: second" {
		t.Errorf("narrated %q", narrated)
	}
	for _, want := range []string{`msg="warning 29"`, "rolling forward", `msg="claim did not finish"`} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %s:\n%s", want, s)
		}
	}
	for _, not := range []string{`msg="warning 6"`, "adopted VM"} {
		if strings.Contains(s, not) {
			t.Errorf("summary has %s (older than the last 25, or not a warning):\n%s", not, s)
		}
	}
}
