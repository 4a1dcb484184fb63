#!/usr/bin/env bash
# Benchmarks of prewarm-agent through the real binaries on loopback:
# publish -> agent has the document (p50/p99, next to a 1 s fixed-interval
# poller measured on the same publishes), and the parked agent's RSS and
# wake-ups per second. Usage: bash agent/bench/run.sh [bench flags, e.g. -n 50]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin/" ./agent/cmd/prewarm-agent ./imds/cmd/prewarm-imds
go run ./agent/bench -imds "$bin/prewarm-imds" -agent "$bin/prewarm-agent" "$@"
