// Package state keeps the Windows platform's own records (which addresses
// and routes it added, which users it made administrators, verifiers of the
// passwords it set) as JSON files written atomically, and makes and checks
// password verifiers so that setting the same password twice is no change.
// It is portable and tested on every OS.
package state
