#!/usr/bin/env bash
# apt-install.sh WHAT PACKAGE...: install the Debian packages among
# PACKAGE... that are missing, for WHAT (the make target that needs them),
# and say which. Nothing it installs is started or left enabled: while it
# installs, /usr/sbin/policy-rc.d forbids starting services (as
# invoke-rc.d reads it), and the systemd units a package enabled are
# disabled again. etcd-server is a special case: an earlier `make deps`
# left etcd.service enabled; it is disabled here whenever etcd-server is
# asked for (the tests run etcd processes of their own, never the
# service).
set -euo pipefail

what=$1
shift
missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done

# disable UNIT... : each one enabled is disabled (and stopped, with
# systemd running; systemctl disable works on the files without it too),
# and named.
disable() {
	local u now=
	[ -d /run/systemd/system ] && now=--now
	for u in "$@"; do
		if ! systemctl is-enabled --quiet "$u" 2>/dev/null; then
			continue
		fi
		if systemctl disable --quiet $now "$u" >/dev/null 2>&1; then
			echo "$what: disabled $u (the tests start their own when they need one)"
		else
			echo "$what: could not disable $u: run systemctl disable $u" >&2
		fi
	done
}

# units PACKAGE: the systemd units PACKAGE ships.
units() {
	dpkg -L "$1" 2>/dev/null | grep -E '^/(usr/)?lib/systemd/system/[^/@]+\.(service|socket|timer|path)$' | xargs -r -n1 basename || true
}

if ((${#missing[@]})); then
	echo "$what: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# apt-install.sh: no service starts while it installs\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	# apt's and the maintainer scripts' chatter goes to a log, shown if
	# the install fails.
	log=$(mktemp /tmp/apt-install.XXXXXX)
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		echo "$what: apt-get install ${missing[*]} failed" >&2
		exit 1
	fi
	rm -f "$log"
	for p in "${missing[@]}"; do
		# shellcheck disable=SC2046
		disable $(units "$p")
	done
fi
for p in "$@"; do
	if [ "$p" = etcd-server ]; then
		disable etcd.service
	fi
done
