#!/usr/bin/env bash
# Benchmarks of prewarm-imds's cloud dialects on loopback, with run.sh's
# method: wrk against the real binary (--rate 0, every dialect, EC2 tokens
# required) alternating with a bare net/http handler that serves the same
# bytes, so imds/bare is what the IMDS's own work costs on each path.
# Bounded (about DURATION x 4 x ROUNDS per endpoint), cleans up after itself.
#
#   imds/bench/dialects.sh
#   DURATION=10s CONNS=64 ROUNDS=2 imds/bench/dialects.sh
set -euo pipefail

DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}

. "$(dirname "$0")/lib.sh" dialects
need_wrk

echo "== building"
go build -o "$work/prewarm-imds" ./imds/cmd/prewarm-imds
go build -o "$work/bare" ./imds/bench/bare

start_imds --dialects native,ec2,azure,gce --ec2-tokens required \
	--availability-zone eu-west-1a --gce-project-id bench-project

# run.sh's document (imds/bench/doc.json).
cp imds/bench/doc.json "$work/doc.json"
cli register bench --address 127.0.0.1 >/dev/null
cli publish bench "$work/doc.json" >/dev/null
base="http://127.0.0.1:$port"
token=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' "$base/latest/api/token")
[ -n "$token" ] || { echo "no EC2 token" >&2; exit 1; }

# name | path | header (one)
endpoints=(
	"native|/metadata/v1/config|Metadata: true"
	"ec2|/latest/meta-data/local-hostname|X-aws-ec2-metadata-token: $token"
	"ec2-identity|/latest/dynamic/instance-identity/document|X-aws-ec2-metadata-token: $token"
	"gce|/computeMetadata/v1/instance/hostname|Metadata-Flavor: Google"
	"gce-recursive|/computeMetadata/v1/?recursive=true|Metadata-Flavor: Google"
	"azure|/metadata/instance?api-version=2021-02-01|Metadata: true"
)

run_wrk() { # name header url
	local out rps p50 p99 non2xx
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "$2" "$3")
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	p50=$(awk '$1=="50%" {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	printf '  %-6s %12s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
	echo "$rps" >>"$work/rps.$1"
}

echo
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== wrk -t$THREADS -c$CONNS -d$DURATION --latency, $ROUNDS rounds alternating imds and bare"
summary=()
for e in "${endpoints[@]}"; do
	IFS='|' read -r name path hdr <<<"$e"
	bport=$((port + 1 + ${#summary[@]}))
	: >"$work/bare.log"
	"$work/bare" -listen "127.0.0.1:$bport" -copy-from "$base$path" -header "$hdr" 2>"$work/bare.log" &
	bpid=$!
	pids+=("$bpid")
	for i in $(seq 1 100); do
		grep -q serving "$work/bare.log" 2>/dev/null && break
		[ "$i" = 100 ] && { echo "bare did not start" >&2; cat "$work/bare.log" >&2; exit 1; }
		sleep 0.05
	done
	echo
	echo "-- $name: GET $path ($(grep -o 'serving [0-9]* bytes' "$work/bare.log"))"
	wrk -t1 -c8 -d1s -H "$hdr" "$base$path" >/dev/null # warm-up
	rm -f "$work/rps.imds" "$work/rps.bare"
	for r in $(seq 1 "$ROUNDS"); do
		run_wrk imds "$hdr" "$base$path"
		run_wrk bare "$hdr" "http://127.0.0.1:$bport$path"
	done
	kill "$bpid" 2>/dev/null || true
	wait "$bpid" 2>/dev/null || true
	ratio=$(awk -v a="$(awk '{s+=$1} END {print s}' "$work/rps.imds")" -v b="$(awk '{s+=$1} END {print s}' "$work/rps.bare")" 'BEGIN {printf "%.0f", 100*a/b}')
	imds_rps=$(awk '{s+=$1} END {printf "%.0f", s/NR}' "$work/rps.imds")
	echo "  imds/bare = $ratio%"
	summary+=("$(printf '%-14s %10s req/s  imds/bare %4s%%' "$name" "$imds_rps" "$ratio")")
done

echo
echo "== summary (mean imds req/s over $ROUNDS rounds; ratio of summed rates)"
printf '%s\n' "${summary[@]}"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== server log (warnings and errors)"
cat "$work/imds.log"
