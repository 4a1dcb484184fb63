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
	if ! go test -count=1 -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 2 "$pkg"; then
		echo "FAIL fuzz $pkg $name"
		fail=1
	fi
done < <(git grep -n '^func Fuzz[A-Za-z0-9_]*(f \*testing.F)' -- '*_test.go' | sort)
exit "$fail"
