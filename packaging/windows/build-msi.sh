#!/usr/bin/env bash
# build-msi.sh: build the Windows agent's MSI on Linux, sign the binary and
# the MSI with osslsigncode, and check the result.
#
#   packaging/windows/build-msi.sh            # -> dist/windows/prewarm-agent-<version>-x64.msi
#
# Steps: cross-compile prewarm-agent.exe (GOOS=windows, no cgo), sign it
# (Authenticode), build the MSI from prewarm-agent.wxs with wixl (msitools),
# sign the MSI, verify both signatures, and check the MSI's tables: the
# binary under Program Files\Prewarm, the service "prewarm-agent" (automatic
# start, LocalSystem, "run"), started on install and stopped and removed on
# uninstall, and the Event Log source's registry values.
#
# Signing: with SIGN_CERT and SIGN_KEY (PEM files; SIGN_PASS for an
# encrypted key; SIGN_CHAIN for intermediates) the real certificate is used.
# Without them a throwaway self-signed code-signing certificate is made
# with openssl for this run only, so CI exercises the whole signing path;
# such an MSI verifies against that certificate only and must not ship.
# TIMESTAMP_URL adds an RFC 3161 timestamp (needs network; none by default).
#
# Environment: MSI_VERSION (default: agent.Version, x.y.z), OUT (default
# dist/windows), AGENT_EXE (a prewarm-agent.exe already built: skips the
# build; test-msi.sh builds one for its two MSIs). Installs wixl, osslsigncode and openssl with apt-get when
# missing and running as root.
set -euo pipefail

cd "$(dirname "$0")/../.."
repo=$PWD
here=packaging/windows

need=()
command -v wixl >/dev/null || need+=(wixl)
command -v msiinfo >/dev/null || need+=(msitools)
command -v osslsigncode >/dev/null || need+=(osslsigncode)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "build-msi.sh: missing ${need[*]}; install them (apt-get install ${need[*]})" >&2
		exit 1
	fi
	echo "build-msi.sh: installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

version=${MSI_VERSION:-$(sed -n 's/^var Version = "\(.*\)"$/\1/p' agent/version.go)}
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
	echo "build-msi.sh: MSI versions are x.y.z with numbers only, not \"$version\"" >&2
	exit 1
fi
IFS=. read -r vmaj vmin vpatch <<<"$version"
if ((vmaj > 255 || vmin > 255 || vpatch >= 65535)); then
	echo "build-msi.sh: MSI versions are at most 255.255.65534 here, not \"$version\"" >&2
	exit 1
fi
# The exclusive bound of the upgrade range (prewarm-agent.wxs).
next=$vmaj.$vmin.$((vpatch + 1))
out=${OUT:-dist/windows}
mkdir -p "$out"
msi=$out/prewarm-agent-$version-x64.msi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -n ${AGENT_EXE:-} ]]; then
	cp "$AGENT_EXE" "$work/unsigned.exe"
else
	echo "build-msi.sh: building prewarm-agent.exe $version"
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/prewarm/prewarm/agent.Version=$version" \
		-o "$work/unsigned.exe" ./agent/cmd/prewarm-agent
fi

# The signing identity.
if [[ -n ${SIGN_CERT:-} && -n ${SIGN_KEY:-} ]]; then
	cert=$SIGN_CERT key=$SIGN_KEY
	ca=${SIGN_CHAIN:-}
else
	echo "build-msi.sh: no SIGN_CERT/SIGN_KEY: signing with a throwaway self-signed certificate"
	cert=$work/cert.pem key=$work/key.pem
	openssl req -x509 -newkey rsa:3072 -sha256 -days 2 -nodes \
		-subj "/CN=Prewarm throwaway test signing/O=Prewarm" \
		-addext "keyUsage=critical,digitalSignature" \
		-addext "extendedKeyUsage=codeSigning" \
		-addext "basicConstraints=critical,CA:FALSE" \
		-keyout "$key" -out "$cert" 2>/dev/null
	ca=$cert
fi
sign() { # in out description
	local args=(sign -certs "$cert" -key "$key" -h sha256 -n "$3" -i "https://github.com/prewarm/prewarm")
	[[ -n ${SIGN_PASS:-} ]] && args+=(-pass "$SIGN_PASS")
	[[ -n ${SIGN_CHAIN:-} ]] && args+=(-ac "$SIGN_CHAIN")
	[[ -n ${TIMESTAMP_URL:-} ]] && args+=(-ts "$TIMESTAMP_URL")
	osslsigncode "${args[@]}" -in "$1" -out "$2" >/dev/null
}
verify() { # file
	local args=(verify -in "$1")
	if [[ -n $ca ]]; then
		args+=(-CAfile "$ca")
	fi
	if ! osslsigncode "${args[@]}" >"$work/verify.log" 2>&1; then
		cat "$work/verify.log" >&2
		echo "build-msi.sh: signature of $1 does not verify" >&2
		exit 1
	fi
}

sign "$work/unsigned.exe" "$work/prewarm-agent.exe" "Prewarm agent"
verify "$work/prewarm-agent.exe"

echo "build-msi.sh: building the MSI"
cp "$here/prewarm-agent.wxs" "$work/"
(cd "$work" && wixl -a x64 -D Version="$version" -D NextVersion="$next" -D AgentExe=prewarm-agent.exe \
	-o unsigned.msi prewarm-agent.wxs)
# wixl writes Type="expandable" as a plain string: give EventMessageFile
# the Registry table's "#%" prefix (REG_EXPAND_SZ), before signing.
(cd "$work" && msiinfo export unsigned.msi Registry >Registry.idt &&
	sed -i 's/\tEventMessageFile\t%SystemRoot%/\tEventMessageFile\t#%%SystemRoot%/' Registry.idt &&
	msibuild unsigned.msi -i Registry.idt)
sign "$work/unsigned.msi" "$work/signed.msi" "Prewarm agent installer"
verify "$work/signed.msi"

# Check what the MSI will do, from its tables.
check() { # table pattern description
	if ! msiinfo export "$work/signed.msi" "$1" | tr -d '\r' | grep -Eq -- "$2"; then
		msiinfo export "$work/signed.msi" "$1" >&2 || true
		echo "build-msi.sh: MSI check failed: $3" >&2
		exit 1
	fi
}
tab=$'\t'
check Directory "^INSTALLDIR${tab}ProgramFiles64Folder${tab}Prewarm\$" "installs under Program Files\\Prewarm"
check File "^PrewarmAgentExe${tab}AgentExe${tab}prewarm-agent.exe${tab}" "ships prewarm-agent.exe"
# ServiceInstall: type 16 (own process), start 2 (automatic), LocalSystem, arguments "run".
check ServiceInstall "^AgentService${tab}prewarm-agent${tab}[^${tab}]*${tab}16${tab}2${tab}1${tab}${tab}${tab}LocalSystem${tab}${tab}run${tab}AgentExe" "registers the service"
# ServiceControl events 163 = start on install + stop on install and uninstall + delete on uninstall.
check ServiceControl "^AgentServiceControl${tab}prewarm-agent${tab}163${tab}" "starts, stops and removes the service"
# "#%" is REG_EXPAND_SZ: the Event Log expands %SystemRoot% only in that type.
check Registry "EventLog\\\\Application\\\\prewarm-agent\\\\?${tab}EventMessageFile${tab}#%%SystemRoot%\\\\System32\\\\EventCreate.exe${tab}" "registers the Event Log source (REG_EXPAND_SZ)"
check Registry "EventLog\\\\Application\\\\prewarm-agent\\\\?${tab}TypesSupported${tab}#7" "Event Log source types"
check InstallExecuteSequence "^DeleteServices${tab}" "removes the service on uninstall"
# Upgrade rows: [0.0.0, next) removed before installing (256 = the minimum
# included; this version itself is inside), [next, ...) detected only (258 =
# only detect + minimum included) and refused by the launch condition.
esc=${version//./\\.} nesc=${next//./\\.}
check Upgrade "^\\{6F1B7B0E-2C8E-4E0B-9A55-3C1D2B7E9A01\\}${tab}0\\.0\\.0${tab}${nesc}${tab}${tab}256${tab}${tab}WIX_UPGRADE_DETECTED\$" "replaces older and same versions"
check Upgrade "^\\{6F1B7B0E-2C8E-4E0B-9A55-3C1D2B7E9A01\\}${tab}${nesc}${tab}${tab}${tab}258${tab}${tab}WIX_DOWNGRADE_DETECTED\$" "detects newer versions"
check LaunchCondition "^NOT WIX_DOWNGRADE_DETECTED${tab}" "refuses a downgrade"
check Property "^SecureCustomProperties${tab}.*WIX_DOWNGRADE_DETECTED" "upgrade properties reach the server side"
check Property "^ProductVersion${tab}${esc}\$" "product version"
check InstallExecuteSequence "^RemoveExistingProducts${tab}${tab}1401\$" "removes the old version before installing"

mv "$work/signed.msi" "$msi"
echo "build-msi.sh: $msi ($(stat -c %s "$msi") bytes), signed by: $(openssl x509 -in "$cert" -noout -subject)"
