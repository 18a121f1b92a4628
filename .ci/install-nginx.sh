#!/usr/bin/env bash
# install-nginx.sh: install nginx and shellcheck for the torsite end-to-end test
# (examples/torsite), without letting the package start its own nginx service.
#
# Steps, in this order:
#   1. write /usr/sbin/policy-rc.d ("exit 101", executable) so invoke-rc.d
#      refuses to start any service the packages ship;
#   2. apt-get install -y only the packages that are missing;
#   3. check (read-only, pgrep) that no nginx is running: the test starts its
#      own private nginx and a system one listening on port 80 is not wanted.
#      Nothing is ever killed here.
#
# Idempotent: a second run installs nothing and changes nothing.
# Needs root (or passwordless sudo) for steps 1 and 2 when something is missing.
set -euo pipefail

log() { printf 'install-nginx: %s\n' "$*" >&2; }

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

# package name -> command it provides
declare -A want=([nginx]=nginx [shellcheck]=shellcheck)
missing=()
for pkg in "${!want[@]}"; do
	if ! command -v "${want[$pkg]}" >/dev/null 2>&1 && [ ! -x "/usr/sbin/${want[$pkg]}" ]; then
		missing+=("$pkg")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	policy=/usr/sbin/policy-rc.d
	wanted_policy=$'#!/bin/sh\nexit 101'
	if [ ! -x "$policy" ] || [ "$(cat "$policy" 2>/dev/null)" != "$wanted_policy" ]; then
		log "writing $policy (exit 101) so packages start no service"
		printf '%s\n' "$wanted_policy" | as_root tee "$policy" >/dev/null
		as_root chmod 0755 "$policy"
	fi
	log "installing: ${missing[*]}"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
		log "apt-get install failed; running apt-get update once and retrying"
		as_root apt-get update
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
	fi
else
	log "nginx and shellcheck already installed"
fi

# Read-only check: a running nginx we did not start is reported, never killed.
if pids=$(pgrep -x nginx); then
	log "WARNING: nginx is running (pids: $(echo "$pids" | tr '\n' ' ')); this script did not start it."
	log "stop it yourself if it is a service started by the package; the test needs no system nginx."
	exit 1
fi
log "ok: $(nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1), $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
