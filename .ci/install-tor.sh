#!/usr/bin/env bash
# install-tor.sh: install tor (with tor-gencert) for the private loopback Tor
# network that the torctl tests start, without letting the package start its
# own tor service.
#
# Steps, in this order:
#   1. if tor or tor-gencert is missing: write /usr/sbin/policy-rc.d
#      ("exit 101", executable) so invoke-rc.d refuses to start the service
#      the package ships, then apt-get install -y tor (apt-get update first
#      only when the package lists do not know tor yet, or the install fails);
#   2. check (read-only, pgrep) that no tor is running: a system tor would be
#      configured for the public Tor network, which must never happen here.
#      Nothing is ever killed by this script.
#
# Idempotent: a second run installs nothing and changes nothing.
# Needs root (or passwordless sudo) for step 1 when tor is missing.
#
# Run it before any test that starts tor; if a tor started by an earlier test
# run is still exiting, wait a few seconds and run it again.
set -euo pipefail

PROG=install-tor
# shellcheck source=.ci/lib.sh
. "$(dirname "$0")/lib.sh"

if have tor && have tor-gencert; then
	log "tor already installed"
else
	apt_install tor
	if ! have tor || ! have tor-gencert; then
		log "tor or tor-gencert still missing after apt-get install"
		exit 1
	fi
fi

# Read-only check: a running tor we did not start is reported, never killed.
if pids=$(pgrep -x tor); then
	log "ERROR: tor is running (pids: $(echo "$pids" | tr '\n' ' ')); this script did not start it."
	log "a system tor service may reach the public Tor network; stop it yourself (by pid) and rerun."
	exit 1
fi
log "ok: $(tor --version 2>/dev/null | head -n 1 || true)"
