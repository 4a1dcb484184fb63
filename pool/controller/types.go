package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/prewarm/prewarm/shared/api"
)

// ClaimRequest is the body of POST /v1/claims.
type ClaimRequest struct {
	Flavor string `json:"flavor"`
	// Network is the tenant network (default: the flavor's tenantNetwork).
	Network string `json:"network,omitempty"`
	// ClaimID makes the claim idempotent: a retry with the same id and
	// document returns the same VM; the same id with another document is
	// refused. Empty: the controller makes one (and returns it).
	ClaimID string `json:"claimId,omitempty"`
	// IP is the tenant address to reserve (default: the first free one).
	IP string `json:"ip,omitempty"`
	// TimeoutMS bounds the claim on the server (default and cap: the
	// config's claimTimeout).
	TimeoutMS int64 `json:"timeoutMs,omitempty"`
	// Document is the tenant's final config document. An interface whose
	// mac is "primary" is given the VM's MAC.
	Document json.RawMessage `json:"document"`
}

// Timings is where a claim's time went, in milliseconds since the claim
// began, except AppliedMS: the agent's own apply steps summed.
type Timings struct {
	PickedMS      int64 `json:"pickedMs"`
	ReservedMS    int64 `json:"reservedMs"`
	PublishedMS   int64 `json:"publishedMs"`
	RemappedMS    int64 `json:"remappedMs"`
	BouncedMS     int64 `json:"bouncedMs"`
	RenewedMS     int64 `json:"renewedMs"`
	AppliedMS     int64 `json:"appliedMs"`
	ProvisionedMS int64 `json:"provisionedMs"`
	TotalMS       int64 `json:"totalMs"`
}

// ClaimResult is the answer to a claim.
type ClaimResult struct {
	ClaimID    string `json:"claimId"`
	VM         string `json:"vm"`
	Flavor     string `json:"flavor"`
	MAC        string `json:"mac"`
	Network    string `json:"network"`
	IP         string `json:"ip"`
	Generation int64  `json:"generation"`
	// Path is "warm" (a pooled VM) or "cold" (booted for this claim).
	Path string `json:"path"`
	// Replayed is true when the claim id had already completed: the
	// result is the earlier claim's (its timings are not repeated).
	Replayed bool    `json:"replayed,omitempty"`
	Timings  Timings `json:"timings"`
}

// FlavorStatus is one flavor's line of GET /v1/status.
type FlavorStatus struct {
	Name       string `json:"name"`
	Target     int    `json:"target"`
	Warm       int    `json:"warm"`
	Booting    int    `json:"booting"`
	Claiming   int    `json:"claiming"`
	Claimed    int    `json:"claimed"`
	Failed     int    `json:"failed"`
	LastBootMS int64  `json:"lastBootMs"`
	LastBootAt string `json:"lastBootAt,omitempty"`
}

// VMStatus is one VM of GET /v1/status.
type VMStatus struct {
	Name     string `json:"name"`
	Flavor   string `json:"flavor"`
	State    string `json:"state"`
	Path     string `json:"path,omitempty"`
	MAC      string `json:"mac"`
	Network  string `json:"network"`
	IP       string `json:"ip"`
	ClaimID  string `json:"claimId,omitempty"`
	Created  string `json:"created,omitempty"`
	Failures string `json:"err,omitempty"`
}

// Status is the body of GET /v1/status.
type Status struct {
	Flavors []FlavorStatus `json:"flavors"`
	VMs     []VMStatus     `json:"vms"`
}

// Error is an error the admin API answers with its status code and the
// contract's error object (api.Error: a message and the offending fields).
type Error struct {
	Code int
	Body api.Error
}

func (e *Error) Error() string {
	s := e.Body.Error
	for _, f := range e.Body.Fields {
		s += fmt.Sprintf("; %s: %s", f.Path, f.Reason)
	}
	return s
}

func errf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Body: api.Error{Error: fmt.Sprintf(format, args...)}}
}

func fieldErr(code int, msg string, fields ...api.FieldError) *Error {
	return &Error{Code: code, Body: api.Error{Error: msg, Fields: fields}}
}

// HTTPStatus returns the status code for err: an *Error's own, else 500.
func HTTPStatus(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return http.StatusInternalServerError
}
