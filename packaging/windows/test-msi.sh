#!/usr/bin/env bash
# test-msi.sh: build the agent's MSI in two versions and check, from their
# Upgrade tables, what Windows Installer will do with one over the other:
#
#   older over newer: refused (the newer is in the older's detect-only range,
#                     and the launch condition stops the install)
#   newer over older: upgrade (the older is in the newer's remove range)
#   same over same:   upgrade, not side by side (the version is in its own
#                     remove range; a rebuild has another ProductCode)
#
# and that EventMessageFile is REG_EXPAND_SZ in both. build-msi.sh checks
# each MSI's own rows; this checks the pair. Runs on Linux (msitools).
#
#   packaging/windows/test-msi.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

old=1.4.2 new=1.4.3
GOOS=windows GOARCH=amd64 CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
	-o "$work/agent.exe" ./agent/cmd/prewarm-agent
for v in $old $new; do
	AGENT_EXE=$work/agent.exe MSI_VERSION=$v OUT=$work/$v bash packaging/windows/build-msi.sh >/dev/null
done
msi() { echo "$work/$1/prewarm-agent-$1-x64.msi"; }

fail=0
# ranges MSI PROPERTY: the VersionMin, VersionMax and Attributes of the row
# whose ActionProperty is PROPERTY.
row() { msiinfo export "$(msi "$1")" Upgrade | tr -d '\r' | awk -F'\t' -v p="$2" '$7 == p { print $2 "|" $3 "|" $5 }'; }
# inrange VERSION MIN MAX ATTR: is VERSION in [MIN or (MIN, MAX) by the
# attribute bits 256 (minimum included) and 512 (maximum included)?
inrange() {
	local v=$1 min=$2 max=$3 attr=$4
	if [[ -n $min ]]; then
		if [[ $v == "$min" ]]; then ((attr & 256)) || return 1
		elif [[ $(printf '%s\n%s\n' "$min" "$v" | sort -V | head -1) != "$min" ]]; then return 1; fi
	fi
	if [[ -n $max ]]; then
		if [[ $v == "$max" ]]; then ((attr & 512)) || return 1
		elif [[ $(printf '%s\n%s\n' "$v" "$max" | sort -V | head -1) != "$v" ]]; then return 1; fi
	fi
}
expect() { # description command...
	local d=$1
	shift
	if "$@"; then echo "ok   $d"; else echo "FAIL $d"; fail=1; fi
}
not() { ! "$@"; }

IFS="|" read -r umin umax uattr <<<"$(row $new WIX_UPGRADE_DETECTED)"
IFS="|" read -r dmin dmax dattr <<<"$(row $new WIX_DOWNGRADE_DETECTED)"
expect "$new removes $old (upgrade)" inrange $old "$umin" "$umax" "$uattr"
expect "$new removes $new (same version: upgrade, not side by side)" inrange $new "$umin" "$umax" "$uattr"
expect "$new does not take $new for a newer version" not inrange $new "$dmin" "$dmax" "$dattr"
expect "$new's downgrade row only detects (attribute 2)" test $((dattr & 2)) -eq 2
IFS="|" read -r umin umax uattr <<<"$(row $old WIX_UPGRADE_DETECTED)"
IFS="|" read -r dmin dmax dattr <<<"$(row $old WIX_DOWNGRADE_DETECTED)"
expect "$old does not remove $new" not inrange $new "$umin" "$umax" "$uattr"
expect "$old detects $new as newer (refused)" inrange $new "$dmin" "$dmax" "$dattr"
for v in $old $new; do
	expect "$v refuses to install over a newer version (launch condition)" \
		grep -q $'^NOT WIX_DOWNGRADE_DETECTED\t' <(msiinfo export "$(msi $v)" LaunchCondition | tr -d '\r')
	expect "$v: EventMessageFile is REG_EXPAND_SZ (#%)" \
		grep -q $'\tEventMessageFile\t#%%SystemRoot%' <(msiinfo export "$(msi $v)" Registry | tr -d '\r')
	expect "$v: ProductCode differs from the other build's" \
		test "$(msiinfo export "$(msi $old)" Property | grep ^ProductCode)" != "$(msiinfo export "$(msi $new)" Property | grep ^ProductCode)"
done
exit $fail
