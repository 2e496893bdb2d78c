#!/usr/bin/env bash
# Create the project's virtualenv (Debian/Ubuntu: python3-venv is installed first when it is missing).
#
#   scripts/bootstrap.sh          every tool: tests, linters, docs, release (requirements-dev.txt); `make venv`
#   scripts/bootstrap.sh --demo   only what `make demo` runs: ansible-core (requirements.txt) and the `ansible`
#                                 package pinned in requirements-dev.txt, which carries community.docker (the
#                                 demo reaches its containers with docker exec)
#
# A venv made with --demo is completed, not rebuilt, by the next full run. The system tools that only the tests
# use (shellcheck, promtool) come from scripts/test-tools.sh (`make test-tools`), never from here.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
    "") ;;
    --demo) mode=demo ;;
    *) echo "usage: $0 [--demo]" >&2; exit 2 ;;
esac

# ansible.cfg's collections_path: make the checkout itself importable as hubspoke.revtunnel. A symlink
# in the tree would trip ansible-test's symlinks check, so it is made here and kept out of git.
link=collections/ansible_collections/hubspoke/revtunnel
if [[ ! -e "$link" ]]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn ../../.. "$link"
fi

VENV=${VENV:-.venv}
FULL_STAMP="$VENV/.requirements.sha256"
DEMO_STAMP="$VENV/.requirements-demo.sha256"
# The one pin of requirements-dev.txt that the demo needs; the file stays the single place of that pin.
ansible_pin=$(grep -E '^ansible==' requirements-dev.txt)
# Both files decide the full venv; requirements.txt and the ansible pin decide the demo's.
full_want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
demo_want=$({ cat requirements.txt; echo "$ansible_pin"; } | sha256sum | cut -d' ' -f1)

stamp_matches() {
    [[ -f "$1" && "$(cat "$1")" == "$2" && -x "$VENV/bin/ansible-playbook" ]]
}

if stamp_matches "$FULL_STAMP" "$full_want"; then
    exit 0
fi
if [[ $mode == demo ]] && stamp_matches "$DEMO_STAMP" "$demo_want"; then
    exit 0
fi

command -v python3 >/dev/null || bash scripts/apt-install.sh python3
if [[ $mode == full ]]; then
    # ansible-test works on the git tree of the checkout.
    command -v git >/dev/null || bash scripts/apt-install.sh git
fi
probe=$(mktemp -d)
if ! python3 -m venv --without-pip "$probe/venv" >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    bash scripts/apt-install.sh python3-venv
fi
rm -rf "$probe"

pip_install() {
    "$VENV/bin/pip" install -q --disable-pip-version-check "$@"
}

if [[ $mode == full ]] && stamp_matches "$DEMO_STAMP" "$demo_want"; then
    echo "bootstrap: adding the test and lint tools of requirements-dev.txt to $VENV (made by make demo)"
    pip_install -r requirements-dev.txt
else
    if [[ $mode == full ]]; then
        echo "bootstrap: creating $VENV with the pinned tools (a few minutes the first time)"
    else
        echo "bootstrap: creating $VENV with ansible-core and $ansible_pin (community.docker)"
    fi
    # Not the venv's own python3 (make puts .venv/bin first on PATH): it is about to be removed.
    python=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$(pwd)/$VENV/bin" | paste -sd:) command -v python3)
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    if [[ $mode == full ]]; then
        pip_install -r requirements-dev.txt
    else
        pip_install -r requirements.txt "$ansible_pin"
    fi
fi
# A full venv holds the demo's packages too.
echo "$demo_want" > "$DEMO_STAMP"
if [[ $mode == full ]]; then
    echo "$full_want" > "$FULL_STAMP"
fi
