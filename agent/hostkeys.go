package agent

import (
	"context"
	"fmt"

	"github.com/prewarm/prewarm/shared/status"
)

// HostKeyManager reads and renews the guest's SSH host keys: the keys a
// tenant's first SSH connection meets, which the agent reports so that the
// connection need not trust them on first use.
type HostKeyManager interface {
	// HostKeys lists the public keys of the host keys sshd serves, parsed
	// and fingerprinted (none, and no error, when there are none: an
	// image without an SSH server).
	HostKeys(ctx context.Context) ([]status.HostKey, error)
	// RegenerateHostKeys removes every host key, generates new ones and
	// tells a running sshd to serve them. It changes the machine every
	// time it is called: the agent calls it once per value of
	// sshHostKeys.regenerate.
	RegenerateHostKeys(ctx context.Context) (StepResult, error)
}

// regenerateHostKeys is the sshHostKeys step: new host keys for a
// regenerate value the agent has not acted on. The value is recorded in the
// state as soon as the keys are new, before the outcome is reported, so an
// agent restarted in between (the generation is applied again) does not
// regenerate the keys a second time, and a later generation carrying the
// same value leaves them alone.
func (a *Agent) regenerateHostKeys(ctx context.Context, gen, value int64) (StepResult, error) {
	a.mu.Lock()
	done := a.st.SSHHostKeysRegenerate != nil && *a.st.SSHHostKeysRegenerate == value
	a.mu.Unlock()
	if done {
		a.log.Info("SSH host keys already regenerated for this regenerate value", "generation", gen, "regenerate", value)
		return StepResult{}, nil
	}
	if a.p.HostKeys == nil {
		return StepResult{}, errUnsupported("regenerate SSH host keys")
	}
	res, err := a.p.HostKeys.RegenerateHostKeys(ctx)
	if err != nil {
		return res, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	v := value
	a.st.SSHHostKeysRegenerate = &v
	if err := a.st.save(a.opts.StateDir); err != nil {
		// The keys are new; a restart before the outcome would make
		// them new once more, which no tenant has seen either.
		return res, fmt.Errorf("record regenerated SSH host keys: %w", err)
	}
	return res, nil
}

// hostKeys returns the host keys for a partial-ready or provisioned report.
// Reading them is best effort: a failure is logged and the report goes
// without keys (the generation is applied all the same).
func (a *Agent) hostKeys(ctx context.Context, gen int64) []status.HostKey {
	if a.p.HostKeys == nil {
		return nil
	}
	a.platMu.Lock()
	keys, err := a.p.HostKeys.HostKeys(ctx)
	a.platMu.Unlock()
	if err != nil {
		a.log.Warn("read SSH host keys: the report goes without them", "generation", gen, "err", err)
		return nil
	}
	if len(keys) > status.MaxHostKeys {
		a.log.Warn("more SSH host keys than a report carries: the first ones are reported", "generation", gen, "keys", len(keys), "max", status.MaxHostKeys)
		keys = keys[:status.MaxHostKeys]
	}
	fps := make([]string, len(keys))
	for i, k := range keys {
		fps[i] = k.Type + " " + k.Fingerprint
	}
	a.log.Info("SSH host keys read", "generation", gen, "fingerprints", fps)
	return keys
}
