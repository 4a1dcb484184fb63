// Package imagetest holds the packaging proof (TestGoldenImage): a golden
// image with the prewarm-agent .deb baked in boots with systemd as PID 1
// (systemd-nspawn --boot) in a network namespace whose veth leads to a
// "host" namespace running prewarm-imds (from the fresh prewarm-imds .deb)
// and dnsmasq, and provisions itself. The namespaces, the veth pair,
// dnsmasq and the processes come from e2e/netlab, the repository's one
// network-namespace test harness.
//
// Run it as root with `make package-test` (bash packaging/test-image.sh,
// which installs the Debian packages it needs and sets
// PREWARM_IMAGE_TEST=1); a plain `go test ./...` skips it.
package imagetest
