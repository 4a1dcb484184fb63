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

. "$(dirname "$0")/lib.sh" writepath
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== write path: $(date -u +%FT%TZ) on $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
go build -o "$work/prewarm-imds" ./imds/cmd/prewarm-imds
go build -o "$work/writepath" ./imds/bench/writepath

start_imds --max-guest-conns -1

"$work/writepath" -guest "127.0.0.1:$port" -admin-socket "$sock" -pid "$imds_pid" \
	-instances "$INSTANCES" -guests "$GUESTS" -steady "$STEADY" -burst-every "$BURST_EVERY" -saturate "$SATURATE" -client "${CLIENT:-raw}"
echo "store files: imds.db $(du -h "$work/data/imds.db" | cut -f1), reports.db $(du -h "$work/data/reports.db" 2>/dev/null | cut -f1)"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== server log (warnings and errors)"
cat "$work/imds.log"
