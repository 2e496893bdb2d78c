#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed: tests/docs opens the built docs site in it.
#
#   scripts/docs/ensure-chromium.sh
#
# Quiet when `chromium` is already on PATH; otherwise installs Debian's `chromium` package (the browser
# comes from the distribution, never as a download of its own). Safe to run repeatedly.
set -euo pipefail

command -v chromium >/dev/null 2>&1 && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-chromium: chromium is missing and the docs test needs it: sudo apt-get install chromium" >&2
    exit 1
fi

log=/var/tmp/revtunnel-chromium-apt.log
echo "ensure-chromium: installing Debian's chromium with apt-get (log: $log)" >&2
# The fonts: without any, every glyph in the screenshot is an empty box.
if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2 || true
    echo "ensure-chromium: apt-get could not install chromium (log: $log)" >&2
    exit 1
fi
command -v chromium >/dev/null 2>&1 || { echo "ensure-chromium: chromium is still missing after apt-get" >&2; exit 1; }
