#!/usr/bin/env bash
# test-image.sh: prove that a golden image with the prewarm-agent .deb baked
# in provisions itself.
#
# The proof is the Go test TestGoldenImage in packaging/imagetest (its doc
# comment lists the eight steps it shows): it builds the packages, makes a
# minimal Debian root with debootstrap (cached under /var/cache/prewarm-ci),
# bakes the fresh .deb in, and boots it with systemd as PID 1
# (systemd-nspawn --boot) in a network namespace whose veth leads to a
# "host" namespace running prewarm-imds and dnsmasq, all built with
# e2e/netlab, the repository's one network-namespace test harness. This
# script installs the Debian packages it needs and runs that test.
#
# Run as root on Debian 12. It touches the network only inside the
# namespaces it creates (pwp-<pid>-h, pwp-<pid>-g) and removes them, its
# processes and its files when it ends.
#
# Environment:
#   PREWARM_SKIP_BUILD=1     use the packages already in dist/
#   PREWARM_CI_CACHE=DIR     where the debootstrap tarball is kept
#                            (default /var/cache/prewarm-ci; "" for no cache)
#   PREWARM_DEBIAN_MIRROR=U  Debian mirror (default: from /etc/apt/sources.list*)
#   KEEP=1                   keep the work directory (logs, root) at the end
#   GO=PATH                  the go command (default: go on $PATH, else /usr/local/go/bin/go)
set -Eeuo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '%s\n' "$*"; }

[[ $(id -u) == 0 ]] || {
	echo "test-image.sh: run as root" >&2
	exit 1
}

# ---------------------------------------------------------------- tools
# shellcheck source=packaging/lib.sh
. "$repo/packaging/lib.sh"
ensure_commands debootstrap:debootstrap systemd-nspawn:systemd-container dnsmasq:dnsmasq-base \
	zstd:zstd nsenter:util-linux ip:iproute2 make:make

# ---------------------------------------------------------------- the proof
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
cd "$repo"
PREWARM_IMAGE_TEST=1 exec "$go" test -count=1 -v -timeout 45m -run '^TestGoldenImage$' ./packaging/imagetest/
