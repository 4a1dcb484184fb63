package config

// SSHHostKeys is the sshHostKeys section: what the agent does with the
// guest's SSH host keys. The keys themselves are always reported (in
// partial-ready and provisioned reports); this section only asks for new
// ones.
type SSHHostKeys struct {
	// Regenerate is a counter, like network.renewDhcp: a value the agent
	// has not acted on yet (any value, the first time) makes it remove the
	// host keys, generate new ones and reload sshd, once, before it
	// reports the generation; the same value in a later generation, or
	// again after a restart, does nothing. Nil means absent. An image
	// baked with its host keys removed needs none of this; an image baked
	// with them sets it in the claim's document.
	Regenerate *int64 `json:"regenerate,omitzero"`
}

// sshHostKeys reads the sshHostKeys section.
func (w *walker) sshHostKeys(path string, v any) *SSHHostKeys {
	k := &SSHHostKeys{}
	m, ok := w.object(path, v, "regenerate")
	if !ok {
		return k
	}
	if n, ok := w.integer(join(path, "regenerate"), m["regenerate"]); ok {
		k.Regenerate = &n
	}
	return k
}

func (k *SSHHostKeys) check(w *walker, path string) {
	if k.Regenerate != nil && *k.Regenerate < 1 {
		w.fail(join(path, "regenerate"), "must be at least 1 (a counter: a value the agent has not acted on regenerates the host keys once; omit the field to keep them)")
	}
}

func (k *SSHHostKeys) clone() *SSHHostKeys {
	if k == nil {
		return nil
	}
	c := *k
	if k.Regenerate != nil {
		v := *k.Regenerate
		c.Regenerate = &v
	}
	return &c
}
