#!/usr/bin/env bash
# Install what the tools need on a Debian/Ubuntu machine and create the project's virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

# ansible.cfg's collections_path: make the checkout itself importable as hubspoke.revtunnel. A symlink
# in the tree would trip ansible-test's symlinks check, so it is made here and kept out of git.
link=collections/ansible_collections/hubspoke/revtunnel
if [[ ! -e "$link" ]]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn ../../.. "$link"
fi

apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "bootstrap: need root (or sudo) to install: $*" >&2
        exit 1
    fi
    if [[ ! -f /var/lib/apt/lists/.revtunnel-updated ]]; then
        apt-get update -qq && touch /var/lib/apt/lists/.revtunnel-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# promtool (Debian's prometheus package) checks the metrics and the alert rules in the unit tests. Only the
# tool is wanted: a Prometheus server that the package starts under systemd is stopped and disabled again.
if ! command -v promtool >/dev/null && [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: promtool is missing and the unit tests need it: sudo apt-get install prometheus" >&2
elif ! command -v promtool >/dev/null; then
    apt_install --no-install-recommends prometheus
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi

# ansible-test sanity runs shellcheck on the shell scripts; without it that test is skipped.
command -v shellcheck >/dev/null || apt_install shellcheck

VENV=${VENV:-.venv}
STAMP="$VENV/.requirements.sha256"
# Both files: requirements.txt (what the collection needs) and requirements-dev.txt (the tools) decide the venv.
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/ansible-playbook" ]]; then
    exit 0
fi

command -v python3 >/dev/null || apt_install python3
command -v git >/dev/null || apt_install git
if ! python3 -m venv --without-pip "$(mktemp -d)/probe" >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt_install python3-venv
fi

echo "bootstrap: creating $VENV with the pinned tools (a few minutes the first time)"
# Not the venv's own python3 (make puts .venv/bin first on PATH): it is about to be removed.
python=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$(pwd)/$VENV/bin" | paste -sd:) command -v python3)
rm -rf "$VENV"
"$python" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements-dev.txt
echo "$want" > "$STAMP"
