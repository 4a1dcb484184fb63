#!/usr/bin/env bash
# build.sh: build the prewarm-agent, prewarm-imds and prewarm-pool .deb and
# .rpm packages into dist/ from the binaries in bin/ (`make package` runs
# `make build` first), with nfpm pinned in go.mod as a Go tool, then lint
# the .debs with lintian when it is installed.
#
# Environment: PKG_VERSION (default: agent.Version plus +git<count>.<sha>),
# GOARCH (default: go env GOARCH), LINTIAN=0 to skip lintian.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
dist=dist
export ARCH=${GOARCH:-$(go env GOARCH)}

for b in prewarm-agent prewarm-imds prewarm-imds-etcd prewarm-pool; do
	if [[ ! -x bin/$b ]]; then
		echo "build.sh: bin/$b is missing: run make build (or make package)" >&2
		exit 1
	fi
done

# A version both dpkg and rpm order the way the history goes: the agent's
# release version, then the commit count and hash.
version() {
	local base count sha
	base=$(sed -n 's/^var Version = "\(.*\)"$/\1/p' agent/version.go)
	base=${base:-0.0.0}
	if ! count=$(git rev-list --count HEAD 2>/dev/null); then
		echo "$base"
		return
	fi
	sha=$(git rev-parse --short=7 HEAD)
	echo "$base+git$count.$sha"
}
export VERSION=${PKG_VERSION:-$(version)}

# Generated inputs: changelog, copyright, gzipped man pages, lintian
# overrides per package. Dates come from the last commit, so two builds of
# one commit give the same packages.
# The nfpm configs name these paths.
DOCDIR=$repo/$dist/.pkg
rm -rf "$DOCDIR"
mkdir -p "$DOCDIR/lintian"
date=$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
year=${date:0:4}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -d "$date" +%s)}
cat >"$DOCDIR/changelog.yml" <<EOT
- semver: $VERSION
  date: $date
  packager: Prewarm maintainers <maintainers@prewarm.invalid>
  deb:
    urgency: medium
    distributions: [unstable]
  changes:
    - note: Prewarm $VERSION (agent, IMDS, pool).
EOT
cat >"$DOCDIR/copyright" <<EOT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: prewarm
Source: https://github.com/prewarm/prewarm

Files: *
Copyright: $year The Prewarm authors
License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may
 not use this file except in compliance with the License. You may obtain a
 copy of the License at
 .
 http://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 License for the specific language governing permissions and limitations
 under the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0
 can be found in "/usr/share/common-licenses/Apache-2.0". The binaries are
 statically linked Go programs and include Go modules under their own
 licenses (BSD-3-Clause, MIT, Apache-2.0), listed by
 \`go version -m /usr/bin/<program>\`.
EOT
# One man page per command (prewarm-imds-status.8, ...), generated from
# the CLI's own help by its hidden gen-man command (cobra/doc, built only
# with -tags man), dated by SOURCE_DATE_EPOCH; the overview pages
# (prewarm-imds.8, prewarm-agent.8, prewarm-pool.8) are packaging/man's.
# And the bash, zsh and fish completion scripts (the completion command).
for m in prewarm-agent prewarm-imds prewarm-pool; do
	case $m in
	prewarm-agent) pkg=./agent/cmd/prewarm-agent ;;
	prewarm-imds) pkg=./imds/cmd/prewarm-imds ;;
	prewarm-pool) pkg=./pool/cmd/prewarm-pool ;;
	esac
	out=$DOCDIR/man/$m
	# A build for this machine (GOARCH may name the packages' target).
	gen=$DOCDIR/gen-$m
	env -u GOOS -u GOARCH go build -tags man -o "$gen" "$pkg"
	"$gen" gen-man "$out"
	rm -f "$out/$m.8"
	for f in "$out"/*.8; do
		gzip -9n "$f"
	done
	# Shell completion scripts.
	mkdir -p "$DOCDIR/completion"
	"$gen" completion bash >"$DOCDIR/completion/$m.bash"
	"$gen" completion zsh >"$DOCDIR/completion/_$m"
	"$gen" completion fish >"$DOCDIR/completion/$m.fish"
	rm "$gen"
done
for m in prewarm-agent prewarm-imds prewarm-pool; do
	gzip -9nc "packaging/man/$m.8" >"$DOCDIR/$m.8.gz"
	# packaging/lintian-overrides holds every package's overrides, each line
	# prefixed with its package; comments above a line justify it.
	awk -v pkg="$m" '
		/^#/ { c = c $0 "\n"; next }
		/^[[:space:]]*$/ { c = ""; next }
		index($0, pkg ": ") == 1 { printf "%s%s\n", c, $0; c = ""; next }
		{ c = "" }' packaging/lintian-overrides >"$DOCDIR/lintian/$m"
done

mkdir -p "$dist"
for m in prewarm-agent prewarm-imds prewarm-pool; do
	rm -f "$dist/${m}_"*.deb "$dist/$m-"*.rpm
	cfg=packaging/nfpm-${m#prewarm-}.yaml
	go tool nfpm package --config "$cfg" --packager deb --target "$dist/"
	# RPM requires a License tag; a .deb has no such field (lintian:
	# unknown-field), and nfpm sets both from one key, so only here.
	{ cat "$cfg"; echo "license: Apache-2.0"; } |
		go tool nfpm package --config - --packager rpm --target "$dist/"
done
ls -l "$dist"/*.deb "$dist"/*.rpm

# The RPMs carry their unit where RPM distributions keep units, and their
# scriptlets (no rpmlint on Debian; this catches a config that lost them).
if command -v rpm >/dev/null; then
	for m in prewarm-agent prewarm-imds; do
		r=$(ls "$dist/$m-"*.rpm)
		rpm -qpl "$r" 2>/dev/null | grep -x "/usr/lib/systemd/system/$m.service" >/dev/null ||
			{ echo "build.sh: $r lacks /usr/lib/systemd/system/$m.service" >&2; exit 1; }
		[[ $(rpm -qp --scripts "$r" 2>/dev/null | grep -c 'scriptlet') == 3 ]] ||
			{ echo "build.sh: $r lacks its %post/%preun/%postun" >&2; exit 1; }
	done
fi

if [[ ${LINTIAN:-1} != 0 ]] && command -v lintian >/dev/null; then
	# Warnings fail the build too: each one is fixed or overridden with a
	# reason in packaging/lintian-overrides.
	# (Not --show-overrides: with it lintian 2.116 fails on the overridden
	# tags too.)
	lintian --fail-on error,warning --display-info "$dist"/*.deb
	echo "lintian: no errors or warnings ($(grep -c '^prewarm-' packaging/lintian-overrides) overrides, each justified in packaging/lintian-overrides)"
fi
