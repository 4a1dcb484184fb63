package config

import (
	"errors"
	"strings"
)

// ErrTooLarge is returned by Decode for a document over MaxDocumentBytes.
var ErrTooLarge = errors.New("config document exceeds 262144 bytes")

// FieldError names one offending field by its path (users[1].name) and the
// rule it breaks.
type FieldError struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// ValidationError lists every field error of one document.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid config")
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Path)
		b.WriteString(": ")
		b.WriteString(f.Reason)
	}
	return b.String()
}
