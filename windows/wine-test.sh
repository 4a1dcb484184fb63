#!/usr/bin/env bash
# wine-test.sh: run the Windows unit tests of windows/... and agent/...
# (the _windows.go code and the portable code, compiled with GOOS=windows)
# under Wine.
#
#   windows/wine-test.sh [go test flags...]     # e.g. -v, -run TestRows
#
# The tests that run there change nothing on the machine: they check pure
# helpers, validation that fails before any system call, and read-only
# queries (adapters, computer name). Tests needing a real Windows subsystem
# skip themselves under Wine (SetNamedSecurityInfo is accepted but not
# honoured by Wine 8).
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
timeout 300 wineboot -i >/dev/null 2>&1 || true
sys32=$WINEPREFIX/drive_c/windows/system32
if [[ ! -d $sys32 ]]; then
	echo "wine-test.sh: wineboot did not create $sys32" >&2
	exit 1
fi

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

echo "wine-test.sh: GOOS=windows go test ./windows/... ./agent/atomicfile ./agent/authkeys ./agent/run ./agent/internal/shareopen under Wine"
GOOS=windows GOARCH=amd64 CGO_ENABLED=0 go test -count=1 -exec "$work/exec.sh" "$@" ./windows/... ./agent/atomicfile ./agent/authkeys ./agent/run ./agent/internal/shareopen
