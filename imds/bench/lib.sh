# Sourced by imds/bench's scripts, the parts they share:
#
#   . "$(dirname "$0")/lib.sh" NAME
#
# leaves the shell at the repository's root with $work a fresh
# /tmp/prewarm-imds-NAME.XXXXXX; on exit every PID in pids is killed and
# waited for, and $work removed.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

work=$(mktemp -d "/tmp/prewarm-imds-$1.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))
sock="$work/admin.sock"
# cli runs the built prewarm-imds against the admin socket.
cli() { "$work/prewarm-imds" "$@" --admin-socket "$sock"; }

# need_wrk installs wrk from apt when it is missing.
need_wrk() {
	if ! command -v wrk >/dev/null; then
		echo "installing wrk" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null
	fi
}

# start_imds ARGS... starts $work/prewarm-imds serve on 127.0.0.1:$port,
# admin socket $sock, store in $work/data, --rate 0 --log-level warn and
# ARGS, its log in $work/imds.log; it waits until the admin API answers
# (at most 5 s) and sets imds_pid.
start_imds() {
	"$work/prewarm-imds" serve --listen "127.0.0.1:$port" --admin-socket "$sock" \
		--data-dir "$work/data" --rate 0 --log-level warn "$@" 2>"$work/imds.log" &
	imds_pid=$!
	pids+=("$imds_pid")
	for i in $(seq 1 100); do
		cli list >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "prewarm-imds did not start" >&2
	cat "$work/imds.log" >&2
	exit 1
}
