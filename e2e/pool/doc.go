// Package pool holds prewarm-pool's end-to-end tests, benchmark and demo:
// the real bin/prewarm-pool driving a real libvirtd and QEMU (TCG) in a
// private namespace (e2e/virtlab), with prewarm-imds beside it and VMs
// booted from the golden image `make image` builds.
//
// The harness (harness_linux.go) starts one lab, writes a pool config
// pointing at it (three isolated networks: the pool's and two tenants'),
// runs `prewarm-pool serve` in the lab's network namespace, and talks to it
// only through the CLI (`claim --output json`, `status --output json`,
// `release`), as an operator would. Guests are checked from the inside
// over SSH with the key the claim's document gave the user.
//
// The tests need root, libvirt and QEMU (they skip naming what is missing)
// and the golden image (they skip and say `make image` builds it). They
// build prewarm-imds and prewarm-pool themselves unless PREWARM_BIN names a
// directory holding both.
//
//	go test -count=1 -v ./e2e/pool/                                  # the e2e tests
//	PREWARM_POOL_BENCH=1 go test -count=1 -v -run Bench ./e2e/pool/    # make bench-pool
//	PREWARM_POOL_DEMO=1 go test -count=1 -v -run Demo ./e2e/pool/      # make demo-pool
package pool
