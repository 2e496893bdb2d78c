#!/usr/bin/env bash
# Run ansible-test on this checkout: scripts/ansible-test.sh sanity|units|integration [ansible-test options].
# units run the Galaxy way (--venv --requirements, a clean environment); sanity and integration use --local.
#
# ansible-test only runs from a directory .../ansible_collections/<namespace>/<name>, and it resolves
# symlinks, so the collections/ link that bootstrap.sh makes does not do: the checkout's files (tracked
# and new, minus what .gitignore drops) are copied to a scratch tree laid out that way and the tests run
# there with --local (the tools of the current environment, no containers) for this Python.
#
# ansible-test puts pip into the venvs it makes for the sanity tests with a get-pip.py it downloads from a
# host outside the package index; scripts/get_pip_offline.py stands in for it (ensurepip, then pip from
# the index), written to ansible-test's cache only where no real script is cached.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command=${1:?usage: scripts/ansible-test.sh sanity|units|integration [options]}
shift

ansible_test=$(command -v ansible-test) || { echo "ansible-test: not on PATH (make venv)" >&2; exit 1; }
python=$(dirname "$ansible_test")/python
[[ -x "$python" ]] || python=python3

# The pip version this ansible-test bootstraps into its venvs, read from ansible-test itself.
pip_version=$("$python" - <<'EOF'
import inspect
import re

from ansible_test._internal import python_requirements

print(re.search(r"pip='([0-9.]+)'", inspect.getsource(python_requirements.get_venv_packages)).group(1))
EOF
)
cache=${HOME}/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [[ ! -s "$cache" ]]; then
    mkdir -p "$(dirname "$cache")"
    cp "$root/scripts/get_pip_offline.py" "$cache"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/revtunnel-ansible-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/hubspoke/revtunnel
mkdir -p "$dest"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and new files; a tracked file deleted in the work tree is not there to copy.
    (cd "$root" && git ls-files -z --cached --others --exclude-standard --deduplicate \
        | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) | tar -C "$dest" -xf -
else
    # A copy without git (scripts/test-latest.sh's container): everything but the local state.
    tar -C "$root" --exclude=./.venv --exclude=./.cache --exclude=./collections --exclude=./tests/output \
        --exclude='__pycache__' --exclude=./.pytest_cache --exclude=./.ruff_cache -cf - . | tar -C "$dest" -xf -
fi

# pip runs many times to fill ansible-test's venvs; its errors still show.
export PIP_QUIET=${PIP_QUIET:-2}

python_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$dest"
echo "ansible-test $command in $dest (Python $python_version, $("$python" -c 'import ansible; print("ansible-core", ansible.__version__)'))"
if [[ $command == units ]]; then
    # As a Galaxy maintainer runs them: ansible-test's own venv with the collection's test requirements, and no
    # PATH of this project's (the tests find ansible-playbook as a module and promtool lives with the lab tests).
    env -i HOME="$HOME" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        ${PIP_CERT:+PIP_CERT="$PIP_CERT"} PIP_QUIET="$PIP_QUIET" \
        "$ansible_test" units --venv --python "$python_version" --requirements --color no "$@"
    exit
fi
"$ansible_test" "$command" --local --python "$python_version" --color no "$@"
