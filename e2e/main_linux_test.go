package e2e

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The test binary doubles as a small HTTP client run inside a guest
	// (see guestHTTP), so requests can be shaped freely: any header, any
	// source address, a Unix socket.
	if os.Getenv("PWE_HELPER") == "http" {
		os.Exit(httpHelper())
	}
	code := m.Run()
	removeBins()
	os.Exit(code)
}
