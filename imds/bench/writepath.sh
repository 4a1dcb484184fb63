#!/usr/bin/env bash
# The write-path benchmark (issue 15): a fresh prewarm-imds on bbolt with
# 10,000 registered instances, 1,000 guests posting status reports (one a
# second each plus bursts where all post at once, then back to back) while
# a publisher publishes to the other instances. Prints publish p50/p99,
# report ingest rate and the server's RSS; asserts nothing. Bounded (about
# a minute), loopback only (127.3.x.y sources), cleans up after itself.
#
#   imds/bench/writepath.sh
#   INSTANCES=10000 GUESTS=1000 STEADY=10s SATURATE=300 imds/bench/writepath.sh
#   CLIENT=http imds/bench/writepath.sh   # guests on net/http's client (costlier)
set -euo pipefail

INSTANCES=${INSTANCES:-10000}
GUESTS=${GUESTS:-1000}
STEADY=${STEADY:-10s}
BURST_EVERY=${BURST_EVERY:-3s}
SATURATE=${SATURATE:-300}

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/prewarm-imds-writepath.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "== write path: $(date -u +%FT%TZ) on $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
go build -o "$work/prewarm-imds" ./imds/cmd/prewarm-imds
go build -o "$work/writepath" ./imds/bench/writepath

port=$((20000 + RANDOM % 20000))
sock="$work/admin.sock"
"$work/prewarm-imds" serve --listen "127.0.0.1:$port" --admin-socket "$sock" \
	--data-dir "$work/data" --rate 0 --max-guest-conns -1 --log-level warn 2>"$work/imds.log" &
pid=$!
for i in $(seq 1 100); do
	"$work/prewarm-imds" list --admin-socket "$sock" >/dev/null 2>&1 && break
	[ "$i" = 100 ] && { echo "prewarm-imds did not start" >&2; cat "$work/imds.log" >&2; exit 1; }
	sleep 0.05
done

"$work/writepath" -guest "127.0.0.1:$port" -admin-socket "$sock" -pid "$pid" \
	-instances "$INSTANCES" -guests "$GUESTS" -steady "$STEADY" -burst-every "$BURST_EVERY" -saturate "$SATURATE" -client "${CLIENT:-raw}"
echo "store file: $(du -h "$work/data/imds.db" | cut -f1)"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== server log (warnings and errors)"
cat "$work/imds.log"
