#!/usr/bin/env bash
# Runs every `go test -fuzz` target of the repository for a bounded time each
# (FUZZTIME, default 20s), one after the other. Each target's seed corpus
# (f.Add and testdata/fuzz/<Name>/) holds the crashers found so far, so a
# regression fails at once; the time bound then looks for new ones.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-20s}"
fail=0
while IFS=: read -r file _ rest; do
	name="${rest#func }"
	name="${name%%(*}"
	pkg="./$(dirname "$file")"
	echo "== fuzz $pkg $name ($fuzztime)"
	# Go's fuzzing coordinator sometimes ends a run with "context
	# deadline exceeded" when -fuzztime runs out while a worker is busy
	# (no input failed, none is written to testdata): that run is tried
	# once more. A real failure names its failing input and fails at once.
	for attempt in 1 2; do
		out=$(go test -count=1 -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 2 "$pkg" 2>&1) && rc=0 || rc=$?
		printf '%s\n' "$out"
		if [ "$rc" -ne 0 ] && [ "$attempt" -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
			echo "== fuzz $pkg $name: the fuzzing engine timed out at the end with no failing input; once more"
			continue
		fi
		break
	done
	if [ "$rc" -ne 0 ]; then
		echo "FAIL fuzz $pkg $name"
		fail=1
	fi
done < <(git grep -n '^func Fuzz[A-Za-z0-9_]*(f \*testing.F)' -- '*_test.go' | sort)
exit "$fail"
