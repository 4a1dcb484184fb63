package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/prewarm/prewarm/agent/atomicfile"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// StateFile is the name of the agent's persisted state in the state dir.
const StateFile = "agent-state.json"

// stateVersion is the layout version of StateFile.
const stateVersion = 1

// maxQueue bounds the undelivered report queue; past it the oldest
// report is dropped (and the drop logged) so a long IMDS outage cannot
// grow the state file without bound.
const maxQueue = 512

// State is what the agent persists across restarts, in
// <state-dir>/agent-state.json. It is written atomically (temporary file,
// fsync, rename, fsync of the directory) before the report that depends on
// it is logged or sent.
type State struct {
	Version int `json:"version"`
	// AppliedGeneration is the last generation every step of which
	// succeeded; AppliedState is the report it earned (partial-ready or
	// provisioned). A restart never applies it again.
	AppliedGeneration int64  `json:"appliedGeneration"`
	AppliedState      string `json:"appliedState,omitempty"`
	// AppliedETag is the IMDS's ETag of the applied document, verbatim:
	// `"<generation>.<epoch>"`, or `"<generation>"` from an older IMDS. Its
	// epoch names the IMDS store the generation counts in, so a document of
	// another store is new whatever its generation. Empty in state files
	// written before it existed, and for documents served without an ETag.
	AppliedETag string `json:"appliedEtag,omitempty"`
	// AttemptedGeneration is the last generation whose outcome (applied or
	// failed) was reported, AttemptedETag its ETag: the agent sends that
	// ETag back in If-None-Match and waits for a document other than it.
	AttemptedGeneration int64  `json:"attemptedGeneration"`
	AttemptedETag       string `json:"attemptedEtag,omitempty"`
	// RenewDHCP is the last network.renewDhcp acted on; PendingRenewDHCP a
	// value recorded with an outcome whose renewal has not finished yet.
	RenewDHCP        *int64 `json:"renewDhcp,omitempty"`
	PendingRenewDHCP *int64 `json:"pendingRenewDhcp,omitempty"`
	// SSHHostKeysRegenerate is the last sshHostKeys.regenerate acted on
	// (hostkeys.go).
	SSHHostKeysRegenerate *int64 `json:"sshHostKeysRegenerate,omitempty"`
	// Apply counts the applies of the document last started, for the
	// attempt numbers of its reports and its retry (retry.go).
	Apply *applyRecord `json:"apply,omitempty"`
	// Reboot is the restart asked for a generation whose outcome is not
	// reported yet (reboot.go).
	Reboot *RebootState `json:"reboot,omitempty"`
	// LinkEvents are the latest link events, oldest first, at most
	// status.MaxLinkEvents; every report carries them (linkevents.go).
	LinkEvents []status.LinkEvent `json:"linkEvents,omitempty"`
	// Seq is the seq of the last report made.
	Seq uint64 `json:"seq"`
	// Queue holds the reports not yet delivered to the IMDS, oldest first.
	Queue []status.Report `json:"queue"`
}

// isApplied reports whether the document of generation gen in the store of
// epoch is the applied one. An epoch compares only when both sides know it
// (an older IMDS, or a state file from before epochs, names none): then a
// store reset that restarts the generations at or below the applied one is
// seen, and the document is new.
func (s *State) isApplied(gen int64, epoch string) bool {
	if gen <= 0 || gen != s.AppliedGeneration {
		return false
	}
	ae := epochOf(s.AppliedETag)
	return ae == "" || epoch == "" || ae == epoch
}

// lastFailed reports whether the last outcome reported was a failure.
func (s *State) lastFailed() bool {
	return s.AttemptedGeneration > 0 && !s.isApplied(s.AttemptedGeneration, epochOf(s.AttemptedETag))
}

// ifNoneMatch is the entity tag the agent waits for a change of: the
// attempted document's ETag verbatim, or, when that document came without
// one (or the state predates ETags, or holds one that does not parse: it
// goes into a request header), its generation in the older form.
func (s *State) ifNoneMatch() string {
	_, err := api.ParseETag(s.AttemptedETag)
	switch {
	case err == nil:
		return s.AttemptedETag
	case s.AttemptedGeneration > 0:
		return api.ETag{Generation: s.AttemptedGeneration}.String()
	}
	return ""
}

// LoadState reads the state file of dir; a missing file is a fresh state.
func LoadState(dir string) (*State, error) {
	p := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: stateVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load state %s: %w", p, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, &corruptStateError{path: p, err: err}
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("load state %s: unknown version %d", p, s.Version)
	}
	return &s, nil
}

func (s *State) save(dir string) error {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	// The directory flushed too: a crash leaves the old state or the new.
	if err := atomicfile.Write(filepath.Join(dir, StateFile), append(b, '\n'), atomicfile.Options{Mode: 0o600, SyncDir: true}); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// corruptStateError is a state file that does not decode.
type corruptStateError struct {
	path string
	err  error
}

func (e *corruptStateError) Error() string { return "load state " + e.path + ": " + e.err.Error() }
func (e *corruptStateError) Unwrap() error { return e.err }
