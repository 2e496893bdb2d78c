#!/usr/bin/env bash
# The collection against the newest ansible-core, which needs a newer Python (>= 3.12) than the project's 3.11:
# in a throwaway container of the lab's Debian 13 image (Python 3.13), install ansible-core $REVTUNNEL_LATEST_CORE
# (default 2.21.5, the newest on 2026-12-02) from the package index, then run ansible-test sanity and units (scripts/ansible-test.sh) and
# a syntax check of site.yml. Needs Docker and the image (make lab).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
core=${REVTUNNEL_LATEST_CORE:-2.21.5}
image=${REVTUNNEL_LATEST_IMAGE:-revtunnel-lab/debian:13}
ca_bundle=/etc/ssl/certs/ca-certificates.crt

docker image inspect "$image" >/dev/null 2>&1 || { echo "test-latest: no image $image (make lab)" >&2; exit 1; }

# The container gets a copy of the tracked and new files, read-only, without the git metadata.
src=$(mktemp -d "${TMPDIR:-/tmp}/revtunnel-latest.XXXXXX")
trap 'rm -rf "$src"' EXIT
(cd "$root" && git ls-files -z --cached --others --exclude-standard --deduplicate \
    | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) | tar -C "$src" -xf -

# Named volumes keep pip's downloads and ansible-test's sanity venvs between runs: 1.5 min warm, 6-8 min cold.
mounts=(-v "$src:/src:ro" -v revtunnel-latest-pip:/root/.cache/pip -v revtunnel-latest-ansible-test:/root/.ansible/test)
# The host's CA bundle: it trusts whatever the host trusts on the way to the package index.
[[ -f "$ca_bundle" ]] && mounts+=(-v "$ca_bundle:$ca_bundle:ro" -e "PIP_CERT=$ca_bundle")
# The unit tests check the metrics and alert rules with promtool: the host's (scripts/test-tools.sh extracts
# Debian's), lent read-only; one binary instead of the whole package in the throw-away container.
promtool=$(command -v promtool || true)
[[ -n "$promtool" ]] || { echo "test-latest: promtool is missing on the host: run make test-tools" >&2; exit 1; }
mounts+=(-v "$promtool:/usr/local/bin/promtool:ro")

docker run --rm -i "${mounts[@]}" -e "CORE=$core" --entrypoint /bin/bash "$image" -s <<'EOF'
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3-venv shellcheck >/dev/null
python3 -m venv /opt/venv
/opt/venv/bin/pip install -q "ansible-core==$CORE" pytest pytest-xdist pytest-mock
export PATH=/opt/venv/bin:$PATH
echo "test-latest: $(ansible --version | head -n1), $(python3 --version), Debian $(cat /etc/debian_version)"

failed=()
bash /src/scripts/ansible-test.sh sanity || failed+=(sanity)
bash /src/scripts/ansible-test.sh units || failed+=(units)

# site.yml as a user runs it from a checkout: the collection found through collections/.
mkdir -p /tmp/collections/ansible_collections/hubspoke
ln -s /src /tmp/collections/ansible_collections/hubspoke/revtunnel
cd /src
ANSIBLE_COLLECTIONS_PATH=/tmp/collections ANSIBLE_LOCAL_TEMP=/tmp/ansible-tmp \
    ansible-playbook --syntax-check -i inventory.example site.yml || failed+=(syntax-check)
if (( ${#failed[@]} )); then
    echo "test-latest: ansible-core $CORE failed: ${failed[*]}" >&2
    exit 1
fi
echo "test-latest: ansible-core $CORE passed sanity, units and the syntax check"
EOF
