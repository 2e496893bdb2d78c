#!/usr/bin/env bash
# The molecule default scenario with the newest ansible-core, which needs Python >= 3.12 on the controller.
# Uses the first python3.13/python3.12 found on PATH or under pyenv, a venv in .cache/venv-latest with the
# pins below, and the same Docker lab images as `make test` (make lab).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
core=${REVTUNNEL_LATEST_CORE:-2.21.5}
venv=.cache/venv-latest

python=""
for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3; do
    # A pyenv shim is on PATH for every version pyenv has, but runs only the versions it selects: try each.
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' >/dev/null 2>&1; then
        python=$(command -v "$candidate")
        break
    fi
done
[[ -n "$python" ]] || { echo "test-latest-molecule: no Python >= 3.12 here (ansible-core $core needs it)" >&2; exit 1; }

if [[ ! -x "$venv/bin/molecule" || "$("$venv/bin/ansible" --version 2>/dev/null | head -n1)" != *"core $core"* ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "ansible-core==$core" "ansible==14.5.0" \
        "molecule==26.10.0" "molecule-plugins[docker]==26.10.12" "pytest-testinfra==10.2.2"
fi
echo "test-latest-molecule: $("$venv/bin/ansible" --version | head -n1), $("$venv/bin/python" --version)"
PATH="$root/$venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$root/collections" exec "$venv/bin/molecule" test -s default
