package agent

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// rebootHost is a fake machine whose computer name takes effect at the next
// boot, like Windows': the hostname step reports RebootRequired until a
// reboot made the pending name the active one. Reboot only records the
// request and signals it; the test plays the shutdown (stops the agent)
// and the new boot (nextBoot, start).
type rebootHost struct {
	*fakePlatform
	mu              sync.Mutex
	boot            int
	active, pending string
	reboots         int
	rebootErr       error
	requested       chan struct{}
}

func newRebootHost(f *fakePlatform) *rebootHost {
	return &rebootHost{fakePlatform: f, boot: 1, active: "template", requested: make(chan struct{}, 4)}
}

func (r *rebootHost) ApplyHostname(ctx context.Context, h string) (StepResult, error) {
	res, err := r.fakePlatform.ApplyHostname(ctx, h)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active != h {
		r.pending, res.RebootRequired = h, true
	} else {
		res.Changed = false
	}
	return res, err
}

func (r *rebootHost) BootID() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strconv.Itoa(r.boot), nil
}

func (r *rebootHost) Reboot(ctx context.Context, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reboots++
	if r.rebootErr != nil {
		return r.rebootErr
	}
	r.requested <- struct{}{}
	return nil
}

// nextBoot is the restart: the pending name becomes the active one.
func (r *rebootHost) nextBoot() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.boot++
	if r.pending != "" {
		r.active, r.pending = r.pending, ""
	}
}

func (r *rebootHost) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reboots
}

func newRebootHarness(t *testing.T) (*harness, *rebootHost) {
	h := newHarness(t)
	rh := newRebootHost(h.plat)
	h.tweak = func(o *Options) { o.Platform.Hostname = rh }
	return h, rh
}

func (r *rebootHost) awaitRequest(t *testing.T) {
	t.Helper()
	select {
	case <-r.requested:
	case <-time.After(waitLimit):
		t.Fatal("no reboot requested")
	}
}

func stepNamed(steps []status.Step, name string) *status.Step {
	for i := range steps {
		if steps[i].Name == name {
			return &steps[i]
		}
	}
	return nil
}

func TestRebootAllowedRebootsOnceAndReportsAfterIt(t *testing.T) {
	h, rh := newRebootHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	g := h.imds.publish(`{"hostname": "web-01", "timezone": "UTC", "reboot": "allowed"}`)
	rh.awaitRequest(t)
	// The shutdown stops the agent before it reports an outcome.
	h.stop()
	for _, r := range h.imds.all() {
		if r.Generation == g && (r.State == status.StateProvisioned || r.State == status.StateFailed) {
			t.Fatalf("outcome %s reported before the reboot", r.State)
		}
	}
	st, err := LoadState(h.stateDir)
	if err != nil || st.Reboot == nil || st.Reboot.Generation != g || st.Reboot.BootID != "1" || st.Reboot.RebootMS != nil {
		t.Fatalf("state before the reboot: %+v, %v", st.Reboot, err)
	}
	time.Sleep(20 * time.Millisecond) // a reboot takes time; the step counts it
	rh.nextBoot()
	h.start()
	pv := h.imds.waitReport(status.StateProvisioned, g)
	if pv.RebootRequired {
		t.Error("provisioned after the reboot still says rebootRequired")
	}
	if pv.Attempt != 1 {
		t.Errorf("provisioned after the reboot has attempt %d; want 1 (the apply the reboot interrupted, not a retry)", pv.Attempt)
	}
	if names := stepNames(pv.Steps); names != "hostname,timezone,reboot" {
		t.Errorf("steps %s; want hostname,timezone,reboot", names)
	}
	if s := stepNamed(pv.Steps, status.StepReboot); s == nil || !s.OK || s.MS < 20 {
		t.Errorf("reboot step %+v; want ok with at least the 20 ms the reboot took", s)
	}
	if s := stepNamed(pv.Steps, status.StepHostname); s == nil || !s.Changed || s.RebootRequired {
		t.Errorf("hostname step %+v; want changed (before the reboot), no reboot required (after it)", s)
	}
	if n := rh.count(); n != 1 {
		t.Errorf("%d reboots; want 1", n)
	}
	// A restart after the outcome neither reboots nor applies again.
	h.stop()
	calls := len(h.plat.callList())
	h.start()
	h.imds.waitFor("the restart's starting report", func(rs []status.Report, _ []request) bool {
		n := 0
		for _, r := range rs {
			if r.State == status.StateStarting {
				n++
			}
		}
		return n == 3
	})
	h.stop()
	if n := rh.count(); n != 1 {
		t.Errorf("%d reboots after a restart; want 1", n)
	}
	if c := len(h.plat.callList()); c != calls {
		t.Errorf("the restart applied again: %v", h.plat.callList()[calls:])
	}
	if st, _ := LoadState(h.stateDir); st.Reboot != nil {
		t.Errorf("reboot record kept after the outcome: %+v", st.Reboot)
	}
}

func TestRebootNeverReportsRebootRequired(t *testing.T) {
	for _, doc := range []string{`{"hostname": "web-01"}`, `{"hostname": "web-01", "reboot": "never"}`} {
		h, rh := newRebootHarness(t)
		h.start()
		g := h.imds.publish(doc)
		pv := h.imds.waitReport(status.StateProvisioned, g)
		h.stop()
		if !pv.RebootRequired || stepNamed(pv.Steps, status.StepReboot) != nil {
			t.Errorf("%s: %+v; want rebootRequired and no reboot step", doc, pv)
		}
		if n := rh.count(); n != 0 {
			t.Errorf("%s: %d reboots", doc, n)
		}
	}
}

func TestRebootNotNeededNoReboot(t *testing.T) {
	h, rh := newRebootHarness(t)
	rh.active = "web-01"
	h.start()
	g := h.imds.publish(`{"hostname": "web-01", "reboot": "allowed"}`)
	pv := h.imds.waitReport(status.StateProvisioned, g)
	h.stop()
	if pv.RebootRequired || rh.count() != 0 || stepNamed(pv.Steps, status.StepReboot) != nil {
		t.Errorf("%+v, %d reboots; want no reboot", pv, rh.count())
	}
}

func TestRebootThatDidNotHappenIsNotAskedAgain(t *testing.T) {
	h, rh := newRebootHarness(t)
	h.start()
	g := h.imds.publish(`{"hostname": "web-01", "reboot": "allowed"}`)
	rh.awaitRequest(t)
	// The agent is restarted in the same boot (the shutdown was aborted).
	h.stop()
	h.start()
	pv := h.imds.waitReport(status.StateProvisioned, g)
	h.stop()
	if !pv.RebootRequired {
		t.Error("the reboot did not happen, yet no rebootRequired")
	}
	if n := rh.count(); n != 1 {
		t.Errorf("%d reboots; want 1 (once per generation)", n)
	}
}

func TestRebootTimeoutReportsRebootRequired(t *testing.T) {
	old := rebootWait
	rebootWait = 50 * time.Millisecond
	t.Cleanup(func() { rebootWait = old })
	h, rh := newRebootHarness(t)
	h.start()
	g := h.imds.publish(`{"hostname": "web-01", "reboot": "allowed"}`)
	pv := h.imds.waitReport(status.StateProvisioned, g)
	h.stop()
	if !pv.RebootRequired || rh.count() != 1 {
		t.Errorf("%+v after %d reboots; want rebootRequired after 1", pv, rh.count())
	}
}

func TestRebootRequestFailsTheGeneration(t *testing.T) {
	h, rh := newRebootHarness(t)
	rh.rebootErr = errors.New("privilege not held")
	h.start()
	g := h.imds.publish(`{"hostname": "web-01", "reboot": "allowed"}`)
	f := h.imds.waitReport(status.StateFailed, g)
	h.stop()
	s := stepNamed(f.Steps, status.StepReboot)
	if s == nil || s.OK || !strings.Contains(s.Error, "privilege not held") || !strings.Contains(f.Error, "reboot: privilege not held") {
		t.Errorf("%+v; want a failed reboot step naming the error", f)
	}
}

// checkingUsers refuses user names over 5 characters, as Windows refuses
// those over 20.
type checkingUsers struct{ *fakePlatform }

func (c checkingUsers) CheckDocument(doc *config.Document) []config.FieldError {
	var out []config.FieldError
	for i, u := range doc.Users {
		if len(u.Name) > 5 {
			out = append(out, config.FieldError{Path: "users[" + strconv.Itoa(i) + "].name", Reason: "too long here"})
		}
	}
	return out
}

func TestPlatformCheckFailsTheDocumentBeforeAnyStep(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(o *Options) { o.Platform.Users = checkingUsers{h.plat} }
	h.start()
	g := h.imds.publish(`{"hostname": "web-01", "users": [{"name": "bob"}, {"name": "margaret"}]}`)
	f := h.imds.waitReport(status.StateFailed, g)
	if !strings.Contains(f.Error, "users[1].name: too long here") || len(f.Steps) != 0 {
		t.Errorf("%+v; want the field and rule, no step", f)
	}
	if c := h.plat.callList(); len(c) != 0 {
		t.Errorf("steps ran: %v", c)
	}
	g2 := h.imds.publish(`{"hostname": "web-01", "users": [{"name": "bob"}]}`)
	h.imds.waitReport(status.StateProvisioned, g2)
	h.stop()
}
