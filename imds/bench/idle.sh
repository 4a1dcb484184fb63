#!/usr/bin/env bash
# Idle RSS of prewarm-imds serve on bbolt (issue 15, target ≤ 12 MB):
# start it, register and publish one instance, one guest GET, wait 4 s,
# read VmRSS / RssAnon / RssFile from /proc/PID/status; with LONG=1 again
# 130 s after start (Go forces a GC every 2 min: the first reading counts
# start-up garbage no GC has collected yet); then a 5 s
# wrk -c64 burst of GETs and the same read 5 s after it. RUNS rounds
# (default 3). The binary is built as make build builds it
# (CGO_ENABLED=0 -trimpath -ldflags '-s -w'); BIN=path measures another
# build instead (e.g. an older commit's, for a before/after in one run).
# Prints numbers, asserts nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh" idle

RUNS=${RUNS:-3}
if [[ -n ${BIN:-} ]]; then
	cp "$BIN" "$work/prewarm-imds"
else
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/prewarm-imds" ./imds/cmd/prewarm-imds
fi
need_wrk
echo "binary $(stat -c %s "$work/prewarm-imds") bytes, $(git rev-parse --short HEAD), load: $(cut -d' ' -f1-3 /proc/loadavg)"

# MB are MiB (kB / 1024); VmRSS also in kB, where a 64 KiB window shows.
mem() { awk '/^VmRSS/ {printf "%s %.1f MB (%d kB)  ", $1, $2/1024, $2} /^RssAnon|^RssFile/ {printf "%s %.1f MB  ", $1, $2/1024}' "/proc/$1/status"; }

for r in $(seq 1 "$RUNS"); do
	rm -rf "$work/data"
	start_imds
	cli register vm-1 --address 127.0.0.1 >/dev/null
	cli publish vm-1 imds/bench/doc.json >/dev/null
	curl -fsS -H "Metadata: true" "http://127.0.0.1:$port/metadata/v1/config" >/dev/null
	sleep 4
	echo "run $r idle:       $(mem "$imds_pid") load $(cut -d' ' -f1 /proc/loadavg)"
	if [[ ${LONG:-0} == 1 ]]; then
		sleep 126
		echo "run $r idle 130 s: $(mem "$imds_pid") load $(cut -d' ' -f1 /proc/loadavg)"
	fi
	wrk -t1 -c64 -d5s -H "Metadata: true" "http://127.0.0.1:$port/metadata/v1/config" >/dev/null
	sleep 5
	echo "run $r after wrk:  $(mem "$imds_pid") load $(cut -d' ' -f1 /proc/loadavg)"
	kill "$imds_pid"
	wait "$imds_pid" 2>/dev/null || true
done
