#!/usr/bin/env bash
# The system tools that only the tests use; `make test` (and unit, lint, sanity) runs this, `make demo` never does.
#
#   - shellcheck, Debian's package: ansible-test sanity runs it on the shell scripts.
#   - promtool checks the metrics and the alert rules. Debian ships it only inside the `prometheus` server
#     package, whose install enables a Prometheus service at boot, and on a host without systemd nothing
#     disables it again. So the package is downloaded, not installed: promtool alone is extracted to
#     .cache/test-tools/bin/, which the Makefile puts on PATH. No service, no account, nothing outside the
#     checkout. A promtool already on PATH is used as it is.
#
# Quiet when everything is there; safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

tools_bin=.cache/test-tools/bin
log=${REVTUNNEL_APT_LOG:-/var/tmp/revtunnel-apt.log}
workdir=""
trap '[[ -z $workdir ]] || rm -rf "$workdir"' EXIT

command -v shellcheck >/dev/null || bash scripts/apt-install.sh --no-install-recommends shellcheck

extract_promtool() {
    local deb
    workdir=$(mktemp -d)
    # apt-get download drops its privileges to _apt, which must be able to write here.
    chmod 0755 "$workdir"
    if ! (cd "$workdir" && apt-get download -q prometheus) >>"$log" 2>&1; then
        if [[ $(id -u) -ne 0 ]]; then
            echo "test-tools: apt-get download prometheus failed (log: $log); as root, apt-get update first" >&2
            return 1
        fi
        { apt-get update -q && (cd "$workdir" && apt-get download -q prometheus); } >>"$log" 2>&1 || {
            tail -n 20 "$log" >&2
            echo "test-tools: could not download Debian's prometheus package for promtool (log: $log)" >&2
            return 1
        }
    fi
    deb=$(find "$workdir" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)
    mkdir -p "$tools_bin"
    dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/bin/promtool >"$tools_bin/promtool.new"
    chmod 0755 "$tools_bin/promtool.new"
    "$tools_bin/promtool.new" --version >/dev/null
    mv "$tools_bin/promtool.new" "$tools_bin/promtool"
    echo "test-tools: promtool from $(basename "$deb") in $tools_bin (the package itself is not installed)"
}

if ! command -v promtool >/dev/null && [[ ! -x $tools_bin/promtool ]]; then
    extract_promtool
fi
