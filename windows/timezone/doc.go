// Package timezone applies the document's timezone on Windows: it maps the
// IANA name to a Windows time zone ID with windows/tzmap and sets it with
// `tzutil /s` through the command-runner seam, only when `tzutil /g` shows
// a different zone. It is portable, so it is tested with a fake runner on
// every OS.
package timezone
