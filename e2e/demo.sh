#!/usr/bin/env bash
# e2e/demo.sh: what `make demo` runs after `make deps build`. It plays the
# whole Prewarm flow with the binaries in bin/, narrated: a pooled guest
# gets a placeholder config (partial-ready), is claimed (its DHCP
# reservation moves to a new network and its link is bounced: the agent
# renews), gets its final config (provisioned) and is reconfigured.
#
# Everything happens inside network namespaces the demo creates (named
# pwe-demo-<pid>-*); the guest has its own hostname, /etc, /home, /var and
# PID namespace, so this machine's hostname, users and network are never
# touched. Interrupting it (Ctrl-C) cleans up as well.
#
# The narration is TestDemo in e2e/demo_linux_test.go, built on the same
# harness as the end-to-end tests.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (network, mount and PID namespaces): sudo make demo" >&2
	exit 1
fi
for b in bin/prewarm-imds bin/prewarm-agent; do
	if [ ! -x "$b" ]; then
		echo "demo: $b is missing: run make build" >&2
		exit 1
	fi
done
for tool in ip nsenter unshare dnsmasq dhclient go; do
	if ! command -v "$tool" >/dev/null; then
		echo "demo: $tool is not installed: run make deps" >&2
		exit 1
	fi
done

prefix="pwe-demo-$$"
work=$(mktemp -d /tmp/prewarm-demo.XXXXXX)
child=

cleanup() {
	rc=$?
	trap - EXIT INT TERM
	# The demo process cleans up after itself on an interrupt; give it a
	# bounded time, then end it (it is the only process this script started).
	if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
		kill -INT "$child" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$child" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	# Whatever a hard kill left behind: the processes it started die with it
	# (PR_SET_PDEATHSIG); its namespaces carry our prefix.
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix-" || true); do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "demo: compiling the narrated scenario (e2e/demo_linux_test.go)..."
go test -c -o "$work/e2e.test" ./e2e/

cd "$root/e2e"
PREWARM_BIN="$root/bin" PREWARM_E2E_DEMO=1 PREWARM_E2E_PREFIX="$prefix" \
	"$work/e2e.test" -test.run '^TestDemo$' -test.count=1 -test.timeout=5m &
child=$!
wait "$child"
