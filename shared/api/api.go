// Package api holds the paths, headers and JSON bodies of the Prewarm guest
// and admin APIs (PROTOCOL.md sections 2 and 3) that are not the config
// document or the status report.
package api

import (
	"encoding/json"
	"time"

	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// DefaultGuestAddr is where guests find the IMDS.
const DefaultGuestAddr = "169.254.169.254:80"

// DefaultAdminSocket is the admin API's Unix socket.
const DefaultAdminSocket = "/run/prewarm/imds-admin.sock"

// Guest API paths.
const (
	PathConfig   = "/metadata/v1/config"
	PathStatus   = "/metadata/v1/status"
	PathInstance = "/metadata/v1/instance"
)

// Admin API paths; {id} is the instance id.
const (
	PathInstances      = "/v1/instances"
	PathInstance1      = "/v1/instances/{id}"
	PathInstanceConfig = "/v1/instances/{id}/config"
	PathInstanceStatus = "/v1/instances/{id}/status"
	PathHealthz        = "/healthz"
	PathMetrics        = "/metrics"
)

// Header names and values.
const (
	HeaderMetadata      = "Metadata"
	MetadataTrue        = "true"
	HeaderForwardedFor  = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded"
	HeaderRetryAfter    = "Retry-After"
	HeaderETag          = "ETag"
	HeaderIfNoneMatch   = "If-None-Match"
	HeaderIfMatch       = "If-Match"
	HeaderAuthorization = "Authorization"
	ContentTypeJSON     = "application/json; charset=utf-8"
)

// Long-poll limits of the guest config and admin status endpoints.
const (
	DefaultWaitSeconds = 60
	MaxWaitSeconds     = 300
)

// MaxStatusHistory is how many reports the IMDS keeps per instance, at
// most; MaxStatusHistoryBytes bounds their size too (the oldest go first,
// the newest always stays).
const (
	MaxStatusHistory      = 256
	MaxStatusHistoryBytes = 1 << 20
)

// Page sizes of GET /v1/instances/{id}/status (its limit parameter).
const (
	DefaultStatusPage = 100
	MaxStatusPage     = 256
)

// InstanceIDPattern is the rule for instance ids; ValidInstanceID checks it.
const InstanceIDPattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`

// ValidInstanceID says whether id matches InstanceIDPattern. It is written
// out rather than compiled: the pattern's bounded repetition compiles to a
// program of about 118 KB, kept for the process's life by each package
// that compiles it (a measurable part of prewarm-imds's idle heap).
func ValidInstanceID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// FieldError names one offending field and the rule it breaks.
type FieldError = config.FieldError

// Error is the body of every error response.
type Error struct {
	Error  string       `json:"error"`
	Fields []FieldError `json:"fields,omitempty"`
}

// InstanceInfo is the guest's GET /metadata/v1/instance answer.
type InstanceInfo struct {
	InstanceID string   `json:"instanceId"`
	Addresses  []string `json:"addresses"`
}

// Registration is the body of PUT /v1/instances/{id}.
type Registration struct {
	Addresses     []string          `json:"addresses,omitempty"`
	HostInterface string            `json:"hostInterface,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
}

// Instance is one instance as the admin API shows it.
type Instance struct {
	ID            string            `json:"id"`
	Addresses     []string          `json:"addresses"`
	HostInterface string            `json:"hostInterface,omitempty"`
	Labels        map[string]string `json:"labels"`
	Generation    int64             `json:"generation"`
	LastStatus    *status.Report    `json:"lastStatus"`
	// PublishedAt is when this IMDS saw Generation published, LastSeen
	// when it received LastStatus: the host's clock, unlike the report's
	// own time, which is the guest's. Absent when unknown (nothing
	// published or reported; after a restart LastSeen is the report's
	// time, never later than the restart).
	PublishedAt *time.Time `json:"publishedAt,omitempty"`
	LastSeen    *time.Time `json:"lastSeen,omitempty"`
}

// InstanceList is the body of GET /v1/instances.
type InstanceList struct {
	Instances []Instance `json:"instances"`
}

// PublishResult is the answer to a publish.
type PublishResult struct {
	Generation int64 `json:"generation"`
}

// StatusHistory is the answer of GET /v1/instances/{id}/status: one page
// of the instance's reports, oldest first.
type StatusHistory struct {
	InstanceID string          `json:"instanceId"`
	Reports    []status.Report `json:"reports"`
	// More is true (and present) when reports past this page exist: ask
	// again with after=Next.
	More bool `json:"more,omitempty"`
	// Next is the seq of the page's last report, present only with More.
	Next uint64 `json:"next,omitempty"`
}

// PublishFile is a publish-directory file, DIR/<id>.json.
type PublishFile struct {
	Addresses     []string          `json:"addresses,omitempty"`
	HostInterface string            `json:"hostInterface,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	// Config is decoded with config.Decode, strictly, like a publish body.
	Config json.RawMessage `json:"config"`
}
