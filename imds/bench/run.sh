#!/usr/bin/env bash
# Benchmarks of prewarm-imds on loopback, against the real binary with
# --rate 0 (and --max-polls-per-instance -1 --max-guest-conns -1: step 2 parks 10,000 polls on
# one instance, past the default bounds of 64 polls per instance and 8192 guest connections). Bounded (about a minute), cleans up after itself, prints numbers.
#
#   imds/bench/run.sh                 # everything
#   DURATION=10s CONNS=64 ROUNDS=2 N=10000 K=1000 INSTANCES=10000 imds/bench/run.sh
#
# 1. GET /metadata/v1/config throughput and latency with wrk, side by side
#    in the same run with a bare net/http handler serving the same bytes.
# 2. N parked long-polls from N 127.x source addresses on one instance:
#    server RSS, and the time from one publish until all are answered.
# 3. publish -> parked long-poll answered, K rounds: p50/p99.
# 4. (INSTANCES=0 skips) INSTANCES instances with one parked poll each: RSS,
#    and INSTANCES publishes answering them (bound by fsync per publish).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
N=${N:-10000}
K=${K:-1000}
ROUNDS=${ROUNDS:-2}
INSTANCES=${INSTANCES:-10000}
export ROUNDS

. "$(dirname "$0")/lib.sh" bench
need_wrk
# 10,000 pollers need 10,000 descriptors on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== $(date -u +%FT%TZ) on $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== building"
go build -o "$work/prewarm-imds" ./imds/cmd/prewarm-imds
go build -o "$work/bare" ./imds/bench/bare
go build -o "$work/longpoll" ./imds/bench/longpoll

bport=$((port + 1))
start_imds --max-polls-per-instance -1 --max-guest-conns -1

# A realistic document (~1.3 KB once stamped), shared with dialects.sh.
cp imds/bench/doc.json "$work/doc.json"
cli register bench-get --address 127.0.0.1 >/dev/null
cli publish bench-get "$work/doc.json" >/dev/null

"$work/bare" -listen "127.0.0.1:$bport" -copy-from "http://127.0.0.1:$port/metadata/v1/config" 2>"$work/bare.log" &
bare_pid=$!
pids+=("$bare_pid")
for i in $(seq 1 100); do
	grep -q serving "$work/bare.log" 2>/dev/null && break
	sleep 0.05
done
# The yardstick must answer the same bytes as the IMDS but for the Date line.
answer() { curl -si -H 'Metadata: true' "$1" | grep -iv '^date:'; }
if diff <(answer "http://127.0.0.1:$port/metadata/v1/config") <(answer "http://127.0.0.1:$bport/metadata/v1/config") >"$work/answers.diff"; then
	echo "== the IMDS and bare answers are the same bytes but for Date ($(answer "http://127.0.0.1:$port/metadata/v1/config" | wc -c) bytes)"
else
	echo "== the IMDS and bare answers differ:"; cat "$work/answers.diff"
fi

# cpu_ticks PID: the process's user+system CPU so far, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

run_wrk() { # name url pid
	local out c0 c1
	c0=$(cpu_ticks "$3")
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H 'Metadata: true' "$2")
	c1=$(cpu_ticks "$3")
	local rps p50 p99 reqs cpu
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	# The server's own CPU per request: unlike req/s, hardly moved by
	# other jobs on the machine taking the cores.
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	cpu=$(awk -v t="$((c1 - c0))" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
	p50=$(awk '$1=="50%" {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	local non2xx
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	printf '%-6s %12s req/s   p50 %8s   p99 %8s   non-2xx %s   server CPU %s us/request\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu"
	echo "$rps" >"$work/rps.$1"
	echo "$cpu" >>"$work/cpu.$1"
}

echo
echo "== 1. GET config: wrk -t$THREADS -c$CONNS -d$DURATION --latency (same bytes: $(stat -c %s "$work/doc.json") B source document)"
wrk -t1 -c8 -d1s -H 'Metadata: true' "http://127.0.0.1:$port/metadata/v1/config" >/dev/null # warm-up
# Alternate the two so that load from elsewhere on the machine hits both.
for r in $(seq 1 "$ROUNDS"); do
	run_wrk imds "http://127.0.0.1:$port/metadata/v1/config" "$imds_pid"
	cat "$work/rps.imds" >>"$work/all.imds"
	run_wrk bare "http://127.0.0.1:$bport/metadata/v1/config" "$bare_pid"
	cat "$work/rps.bare" >>"$work/all.bare"
done
sum() { awk '{s += $1} END {print s}' "$1"; }
awk -v a="$(sum "$work/all.imds")" -v b="$(sum "$work/all.bare")" \
	'BEGIN {printf "imds/bare over %s rounds = %.0f%%\n", ENVIRON["ROUNDS"], 100*a/b}'
awk -v a="$(sum "$work/cpu.imds")" -v b="$(sum "$work/cpu.bare")" \
	'BEGIN {printf "server CPU per request, imds/bare over %s rounds = %.0f%% (so the IMDS would serve %.0f%% of bare'"'"'s requests on the same CPU)\n", ENVIRON["ROUNDS"], 100*a/b, 100*b/a}'

echo
echo "== 2. $N parked long-polls, one publish"
"$work/longpoll" -mode fanout -n "$N" -guest "127.0.0.1:$port" -admin-socket "$sock" -pid "$imds_pid"

echo
echo "== 3. publish -> parked long-poll answered, $K rounds"
"$work/longpoll" -mode latency -k "$K" -guest "127.0.0.1:$port" -admin-socket "$sock" -pid "$imds_pid"

if [ "$INSTANCES" -gt 0 ]; then
	echo
	echo "== 4. for comparison: $INSTANCES instances with one parked long-poll each, one publish each"
	"$work/longpoll" -mode instances -n "$INSTANCES" -guest "127.0.0.1:$port" -admin-socket "$sock" -pid "$imds_pid"
fi

echo
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== server log (warnings and errors)"
cat "$work/imds.log"
