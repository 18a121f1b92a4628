# shellcheck shell=bash
# lib.sh: what the .ci/install-*.sh scripts share. Source it after setting
# PROG (the name log lines start with).

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# as_root runs a command as root: directly, or through sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		log "need root to run: $*"
		return 1
	fi
}

# have reports whether a command is installed (also in sbin, off PATH).
have() {
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

# apt_install installs packages without letting them start their services:
# /usr/sbin/policy-rc.d exiting 101 is written first. apt-get update runs only
# when the package lists do not know a package, or the install fails.
apt_install() {
	local policy=/usr/sbin/policy-rc.d wanted=$'#!/bin/sh\nexit 101' pkg
	if [ ! -x "$policy" ] || [ "$(cat "$policy" 2>/dev/null)" != "$wanted" ]; then
		log "writing $policy (exit 101) so packages start no service"
		printf '%s\n' "$wanted" | as_root tee "$policy" >/dev/null
		as_root chmod 0755 "$policy"
	fi
	for pkg in "$@"; do
		if ! apt-cache show "$pkg" >/dev/null 2>&1; then
			log "package lists do not know $pkg: running apt-get update"
			as_root apt-get update
			break
		fi
	done
	log "installing: $*"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; then
		log "apt-get install failed; running apt-get update once and retrying"
		as_root apt-get update
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
	fi
}
