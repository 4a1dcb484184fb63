package agent

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/prewarm/prewarm/internal/sshtest"
	"github.com/prewarm/prewarm/shared/status"
)

// fakeHostKeys holds one ed25519 host key that RegenerateHostKeys replaces.
type fakeHostKeys struct {
	mu          sync.Mutex
	key         status.HostKey
	regenerated int
	listErr     error
}

func newFakeHostKeys(t *testing.T) *fakeHostKeys {
	f := &fakeHostKeys{}
	f.key = status.HostKeyOf(sshtest.NewKey())
	return f
}

func (f *fakeHostKeys) HostKeys(context.Context) ([]status.HostKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	return []status.HostKey{f.key}, nil
}

func (f *fakeHostKeys) RegenerateHostKeys(context.Context) (StepResult, error) {
	k := status.HostKeyOf(sshtest.NewKey())
	f.mu.Lock()
	defer f.mu.Unlock()
	f.key = k
	f.regenerated++
	return StepResult{Changed: true, Actions: []string{"regenerated host keys"}}, nil
}

func (f *fakeHostKeys) current() (status.HostKey, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.key, f.regenerated
}

func withHostKeys(h *harness, hk HostKeyManager) {
	h.tweak = func(o *Options) { o.Platform.HostKeys = hk }
}

func onlyKey(t *testing.T, r status.Report) status.HostKey {
	t.Helper()
	if len(r.SSHHostKeys) != 1 {
		t.Fatalf("%s report of generation %d carries %d host keys, want 1", r.State, r.Generation, len(r.SSHHostKeys))
	}
	return r.SSHHostKeys[0]
}

func stepOf(r status.Report, name string) *status.Step {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// TestHostKeysRegeneratedAtClaim: the pooled VM reports its baked keys as
// partial-ready; the claim's document asks for new keys, and provisioned
// reports the new ones. The same regenerate value in a later generation
// leaves the keys alone; a new value renews them again.
func TestHostKeysRegeneratedAtClaim(t *testing.T) {
	h := newHarness(t)
	hk := newFakeHostKeys(t)
	withHostKeys(h, hk)
	h.start()
	baked, _ := hk.current()

	g1 := h.imds.publish(`{"partial": true, "hostname": "pool-7"}`)
	r := h.imds.waitReport(status.StatePartialReady, g1)
	if k := onlyKey(t, r); k != baked {
		t.Errorf("partial-ready reports %+v, the guest has %+v", k, baked)
	}

	g2 := h.imds.publish(`{"hostname": "web-01", "sshHostKeys": {"regenerate": 1}}`)
	r = h.imds.waitReport(status.StateProvisioned, g2)
	now, n := hk.current()
	if n != 1 {
		t.Fatalf("regenerated %d times, want 1", n)
	}
	if k := onlyKey(t, r); k != now || k == baked {
		t.Errorf("provisioned reports %+v; the new key is %+v, the baked one %+v", k, now, baked)
	}
	if s := stepOf(r, status.StepSSHHostKeys); s == nil || !s.OK || !s.Changed {
		t.Errorf("provisioned steps %+v: want an ok, changed %s step", r.Steps, status.StepSSHHostKeys)
	}

	g3 := h.imds.publish(`{"hostname": "web-02", "sshHostKeys": {"regenerate": 1}}`)
	r = h.imds.waitReport(status.StateProvisioned, g3)
	if _, n := hk.current(); n != 1 {
		t.Errorf("the same regenerate value regenerated again (%d times)", n)
	}
	if k := onlyKey(t, r); k != now {
		t.Errorf("generation %d reports %+v, want the unchanged %+v", g3, k, now)
	}
	if s := stepOf(r, status.StepSSHHostKeys); s == nil || !s.OK || s.Changed {
		t.Errorf("steps %+v: want an ok, unchanged %s step", r.Steps, status.StepSSHHostKeys)
	}

	g4 := h.imds.publish(`{"hostname": "web-02", "sshHostKeys": {"regenerate": 2}}`)
	r = h.imds.waitReport(status.StateProvisioned, g4)
	newer, n := hk.current()
	if n != 2 || newer == now {
		t.Errorf("regenerate 2: regenerated %d times in all, want 2", n)
	}
	if k := onlyKey(t, r); k != newer {
		t.Errorf("generation %d reports %+v, want %+v", g4, k, newer)
	}
}

// TestHostKeysNotRegeneratedTwiceAcrossRestart stops the agent after the
// keys were regenerated but before the outcome (inside the network step,
// which follows): the restart applies the generation again without new
// keys, and reports the keys of the one regeneration.
func TestHostKeysNotRegeneratedTwiceAcrossRestart(t *testing.T) {
	h := newHarness(t)
	hk := newFakeHostKeys(t)
	withHostKeys(h, hk)
	h.plat.block[status.StepNetwork] = make(chan struct{})
	h.plat.entered = make(chan string, 16)
	g := h.imds.publish(`{"hostname": "web-01", "sshHostKeys": {"regenerate": 5}, "network": {"interfaces": []}}`)
	h.start()
	for s := range h.plat.entered {
		if s == status.StepNetwork {
			break
		}
	}
	h.stop()
	if _, n := hk.current(); n != 1 {
		t.Fatalf("regenerated %d times before the stop, want 1", n)
	}
	delete(h.plat.block, status.StepNetwork)
	h.start()
	r := h.imds.waitReport(status.StateProvisioned, g)
	h.stop()
	now, n := hk.current()
	if n != 1 {
		t.Errorf("the restart regenerated the keys again (%d times)", n)
	}
	if k := onlyKey(t, r); k != now {
		t.Errorf("provisioned reports %+v, the guest has %+v", k, now)
	}
	if n := count(h.imds.all(), status.StateProvisioned, g); n != 1 {
		t.Errorf("%d provisioned reports", n)
	}
}

// TestHostKeysWithoutAdapter: a platform without host keys fails a
// document asking for new ones (naming the step), and provisions one that
// does not, without keys; a failing read provisions without keys too.
func TestHostKeysWithoutAdapter(t *testing.T) {
	h := newHarness(t)
	h.start()
	g1 := h.imds.publish(`{"hostname": "web-01", "sshHostKeys": {"regenerate": 1}}`)
	r := h.imds.waitReport(status.StateFailed, g1)
	if s := stepOf(r, status.StepSSHHostKeys); s == nil || s.OK || s.Error == "" {
		t.Errorf("failed report's steps %+v: want a failed %s step with its error", r.Steps, status.StepSSHHostKeys)
	}
	g2 := h.imds.publish(`{"hostname": "web-01"}`)
	r = h.imds.waitReport(status.StateProvisioned, g2)
	if len(r.SSHHostKeys) != 0 {
		t.Errorf("keys without an adapter: %+v", r.SSHHostKeys)
	}
	h.stop()

	hk := newFakeHostKeys(t)
	hk.listErr = errors.New("read /etc/ssh: permission denied")
	withHostKeys(h, hk)
	h.start()
	g3 := h.imds.publish(`{"hostname": "web-02"}`)
	r = h.imds.waitReport(status.StateProvisioned, g3)
	if len(r.SSHHostKeys) != 0 {
		t.Errorf("keys despite a failed read: %+v", r.SSHHostKeys)
	}
}
