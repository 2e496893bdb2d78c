#!/usr/bin/env bash
# Install Debian packages for the project's scripts, quietly: apt's output goes to a log, and only its last
# lines are shown when apt fails.
#
#   scripts/apt-install.sh [apt-get install options] PACKAGE...
#
# apt-get update runs only when the install fails (lists missing or stale), so a machine with fresh lists
# is not updated on every call. needrestart (Ubuntu, some Debian machines) would print a report of
# services to restart, or ask on a terminal, after each install: NEEDRESTART_SUSPEND skips its apt hook.
#
# REVTUNNEL_APT_LOG: the log (default /var/tmp/revtunnel-apt.log).
set -euo pipefail

log=${REVTUNNEL_APT_LOG:-/var/tmp/revtunnel-apt.log}

if [[ $# -eq 0 ]]; then
    echo "usage: $0 [apt-get install options] PACKAGE..." >&2
    exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "apt-install: only root can install $* (sudo $0 $*)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 NEEDRESTART_MODE=l

attempt() {
    apt-get install -y -q "$@"
}

if ! {
    printf '\n=== %s apt-get install %s\n' "$(date -Is)" "$*"
    attempt "$@" || { apt-get update -q && attempt "$@"; }
} >>"$log" 2>&1 </dev/null; then
    tail -n 30 "$log" >&2 || true
    echo "apt-install: apt-get could not install $* (log: $log)" >&2
    exit 1
fi
