# lib.sh: shell helpers the packaging scripts source (bash; set -Eeuo
# pipefail in the caller). Needs the caller's say().

# ensure_commands CMD:PACKAGE...: installs with apt-get the Debian packages
# whose command is not on $PATH, all in one apt-get call.
ensure_commands() {
	local c need=()
	for c in "$@"; do
		command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
	done
	if ((${#need[@]})); then
		say "installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		timeout 300 apt-get update -qq
		timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
}
