#!/usr/bin/env bash
# The parked agent's wake-ups and RSS over a long window (issue 15: target
# ≤ 0.1 wake-ups/s over 10 minutes, RSS ≤ 12 MB). The agent runs against a
# real prewarm-imds on loopback, gets a few documents, then is left parked;
# every second the context switches of all its threads are read from
# /proc/PID/task/*/status (schedstat's timeslices beside them), and the
# seconds that had any are printed, so a periodic wake-up shows its period.
# PREWARM_IDLE_WINDOW sets the window (default 10m; e.g. 90s for a quick run).
# Usage: bash agent/bench/idle.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin/" ./agent/cmd/prewarm-agent ./imds/cmd/prewarm-imds
go run ./agent/bench -imds "$bin/prewarm-imds" -agent "$bin/prewarm-agent" -n 5 -park "${PREWARM_IDLE_WINDOW:-10m}"
