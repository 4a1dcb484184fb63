#!/usr/bin/env bash
# wine-test.sh: run the Windows unit tests of windows/..., agent/...,
# shared/... and internal/... (the _windows.go code and the portable code,
# compiled with GOOS=windows: what the Windows CI's unit job runs) under
# Wine.
#
#   windows/wine-test.sh [go test flags...]     # e.g. -v, -run TestRows
#
# The tests that run there change nothing on the machine: they check pure
# helpers, validation that fails before any system call, and read-only
# queries (adapters, computer name). Tests needing a real Windows subsystem
# skip themselves under Wine (SetNamedSecurityInfo is accepted but not
# honoured by Wine 8).
#
# Wine-only gaps, worked around here and nowhere else:
# - Wine 8 fails NtSetInformationFile(FileDispositionInformationEx) with
#   STATUS_INVALID_DEVICE_REQUEST, which Go's os.RemoveAll on Windows does not
#   take for "unsupported" (it falls back only on INVALID_INFO_CLASS,
#   INVALID_PARAMETER, NOT_SUPPORTED): every t.TempDir cleanup failed with
#   "unlinkat ...: Invalid function". The tests are built with an -overlay
#   of the toolchain's internal/syscall/windows/at_windows.go whose
#   TestDeleteatFallback (the toolchain's own switch for its tests) is true:
#   the classic FileDispositionInfo path, which Wine has.
# - WINE_SKIP (below): tests that fail only under Wine, each with the reason.
#
# Debian 12's Wine 8.0 lacks bcryptprimitives.dll, whose ProcessPrng the Go
# runtime (1.24+) needs before main: a Go program dies with "fatal error:
# bcryptprimitives.dll not found". This script assembles a 5 KB stand-in
# that forwards ProcessPrng to advapi32's SystemFunction036 (RtlGenRandom)
# with binutils-mingw-w64 (as, ld, dlltool; no C compiler) and puts it in
# the throwaway Wine prefix's system32. Needs: wine, wine64,
# binutils-mingw-w64-x86-64 (installed with apt-get when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v wine >/dev/null || need+=(wine)
[[ -x /usr/lib/wine/wine64 ]] || need+=(wine64)
command -v x86_64-w64-mingw32-as >/dev/null || need+=(binutils-mingw-w64-x86-64)
if ((${#need[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "wine-test.sh: missing ${need[*]}; install them (apt-get install ${need[*]})" >&2
		exit 1
	fi
	echo "wine-test.sh: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

work=$(mktemp -d)
export WINEPREFIX=$work/prefix WINEDEBUG=-all WINEARCH=win64 WINEDLLOVERRIDES="mscoree,mshtml="
cleanup() {
	wineserver -k 2>/dev/null || true # the server of this prefix only
	rm -rf "$work"
}
trap cleanup EXIT

echo "wine-test.sh: $(wine --version), creating a prefix"
# A persistent wineserver, started before anything else with its stdio on
# /dev/null: one that a test's wine started would inherit that test's
# stdout and hold it open while other test binaries run ("Test I/O
# incomplete 1m30s after exiting ... WaitDelay expired": the package
# fails). cleanup's wineserver -k ends it.
#
# wineboot takes 4-5 s here, but once in a CI rehearsal it left no
# system32 behind (its output was not kept then): it is now kept, and a
# failed prefix is thrown away and made again once, from scratch, with
# its wineserver ended first.
sys32=$WINEPREFIX/drive_c/windows/system32
for attempt in 1 2; do
	mkdir -p "$WINEPREFIX"
	wineserver -p >/dev/null 2>&1 </dev/null
	rc=0
	timeout 300 wineboot -i >"$work/wineboot.log" 2>&1 </dev/null || rc=$?
	[[ -d $sys32 ]] && break
	echo "wine-test.sh: wineboot (attempt $attempt, exit $rc) did not create $sys32; its output:" >&2
	tail -n 20 "$work/wineboot.log" >&2
	if ((attempt == 2)); then
		exit 1
	fi
	wineserver -k 2>/dev/null || true
	timeout 30 wineserver -w 2>/dev/null || true
	rm -rf "$WINEPREFIX"
done

# The ProcessPrng stand-in.
cat >"$work/prng.s" <<'ASM'
	.text
	.globl	ProcessPrng
# BOOL ProcessPrng(PBYTE data, SIZE_T len): the Go runtime asks for small
# buffers, so len fits SystemFunction036's ULONG; its BOOLEAN widens to BOOL.
ProcessPrng:
	subq	$40, %rsp
	call	*__imp_SystemFunction036(%rip)
	addq	$40, %rsp
	movzbl	%al, %eax
	ret
	.globl	DllEntry
DllEntry:
	movl	$1, %eax
	ret
ASM
printf 'LIBRARY advapi32.dll\nEXPORTS\nSystemFunction036\n' >"$work/advapi32.def"
printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\nProcessPrng\n' >"$work/bcryptprimitives.def"
x86_64-w64-mingw32-dlltool -d "$work/advapi32.def" -l "$work/libadvapi32.a"
x86_64-w64-mingw32-as -o "$work/prng.o" "$work/prng.s"
x86_64-w64-mingw32-ld -shared -e DllEntry -o "$work/bcryptprimitives.dll" \
	"$work/prng.o" "$work/bcryptprimitives.def" "$work/libadvapi32.a"
[[ -e $sys32/bcryptprimitives.dll ]] || cp "$work/bcryptprimitives.dll" "$sys32/"

cat >"$work/exec.sh" <<'EXEC'
#!/bin/sh
# go test -exec: run one test binary under Wine, bounded in time.
exec timeout 600 wine "$@"
EXEC
chmod +x "$work/exec.sh"

# The overlay: the toolchain's file with TestDeleteatFallback on (see above).
at=$(go env GOROOT)/src/internal/syscall/windows/at_windows.go
sed 's/^var TestDeleteatFallback bool$/var TestDeleteatFallback = true/' "$at" >"$work/at_windows.go"
if ! grep -q '^var TestDeleteatFallback = true$' "$work/at_windows.go"; then
	echo "wine-test.sh: $at has no 'var TestDeleteatFallback bool' (a new Go?): update the overlay" >&2
	exit 1
fi
printf '{"Replace":{"%s":"%s"}}\n' "$at" "$work/at_windows.go" >"$work/overlay.json"

# Tests that fail under Wine only, one a line with the reason; they run on
# the Windows CI (.github/workflows/windows.yml's unit job runs everything).
wine_skip=(
	# Restarts the agent twice against a refusing IMDS and waits 10 s for
	# the state: passes alone under Wine (1 s), times out when the whole
	# agent package runs in one emulated process on a loaded machine.
	TestQueuedReportsSurviveRestart
)
skip="^($(IFS='|'; echo "${wine_skip[*]}"))\$"

pkgs=(./windows/... ./agent/... ./shared/... ./internal/...)
echo "wine-test.sh: GOOS=windows go test ${pkgs[*]} under Wine (skipped: ${wine_skip[*]})"
GOOS=windows GOARCH=amd64 CGO_ENABLED=0 go test -overlay "$work/overlay.json" -count=1 -timeout 900s \
	-exec "$work/exec.sh" -skip "$skip" "$@" "${pkgs[@]}"
