#!/usr/bin/env bash
# Build the collection's HTML docs site with antsibull-docs and Sphinx: every module, filter and role entry
# point of the checkout, and the guides of docs/ (Markdown, read by MyST).
#
#   scripts/docs/build-site.sh [DEST]      (default .cache/docs-site; the site lands in DEST/build/html)
#
# 1. `antsibull-docs sphinx-init` writes DEST (conf.py, build.sh, rst/index.rst from scripts/docs/site/);
#    scripts/docs/site/conf_overrides.py is appended to its conf.py.
# 2. docs/*.md are copied to DEST/rst/docs/ (antsibull-docs' cleanup only touches DEST/rst/collections/).
# 3. The generated build.sh runs as it is: `antsibull-docs collection --fail-on-error` for this checkout,
#    then `sphinx-build -W --keep-going` with conf.py's `nitpicky = True`, so any warning or broken
#    reference fails the build.
# Tools (antsibull-docs, ansible-doc, sphinx-build) come from PATH: `make docs` puts .venv/bin first.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=$(realpath -m "${1:-$root/.cache/docs-site}")
site=$root/scripts/docs/site

# The checkout as hubspoke.revtunnel on the collections path, as bootstrap.sh makes it.
link=$root/collections/ansible_collections/hubspoke/revtunnel
if [[ ! -e "$link" ]]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn ../../.. "$link"
fi
export ANSIBLE_CONFIG=$root/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$root/collections

rm -rf "$dest"
mkdir -p "$dest"
version=$(sed -n 's/^version: *//p' "$root/galaxy.yml")
antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$dest" \
    --project hubspoke.revtunnel --copyright "hubspoke.revtunnel developers" \
    --title "hubspoke.revtunnel $version" --html-short-title hubspoke.revtunnel \
    --index-rst-source "$site/index.rst" hubspoke.revtunnel >/dev/null
cat "$site/conf_overrides.py" >>"$dest/conf.py"

mkdir -p "$dest/rst/docs"
cp "$root"/docs/*.md "$dest/rst/docs/"

bash "$dest/build.sh"
echo "docs site: $dest/build/html/index.html"
