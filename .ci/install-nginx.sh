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

PROG=install-nginx
# shellcheck source=.ci/lib.sh
. "$(dirname "$0")/lib.sh"

missing=()
for pkg in nginx shellcheck; do
	have "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
	apt_install "${missing[@]}"
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
