#!/usr/bin/env bash
# Build the execution environment (EE) image that runs this collection: `make ee`.
#
#   scripts/ee/build-ee.sh [--force-base]
#
# 1. The base image (execution-environment.yml's images.base_image.name): Debian 12 from mmdebstrap, offline
#    from any registry, provisioned by scripts/ee/base-setup.sh. Rebuilt only when its recipe changes
#    (revtunnel.recipe label), or with --force-base.
# 2. The collection tarball (ansible-galaxy collection build), copied to .cache/ee/ only when its content
#    changed, so that Docker's layer cache holds when nothing did.
# 3. ansible-builder build with the Docker engine: ansible-core and ansible-runner from PyPI, the collection from
#    the tarball, the OpenSSH client from the collection's bindep file. Tagged revtunnel-ee:<version> and
#    revtunnel-ee:latest.
#
# REVTUNNEL_LAB_MIRROR, REVTUNNEL_LAB_SECURITY_MIRROR: Debian mirrors (as for the lab images).
# REVTUNNEL_EE_CA_BUNDLE: CA bundle pip trusts during the build (default: the host's,
#                         /etc/ssl/certs/ca-certificates.crt); it is not left in the image.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/scripts/ee
bin=${BIN:-$root/.venv/bin}
work=$root/.cache/ee
mirror=${REVTUNNEL_LAB_MIRROR:-http://deb.debian.org/debian}
security_mirror=${REVTUNNEL_LAB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ca_bundle=${REVTUNNEL_EE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
suite=bookworm
repository=revtunnel-ee
# Shared with scripts/lab/build-images.sh: one image build at a time on the shared Docker daemon.
lock_file=/var/lock/revtunnel-lab-build.lock
tmp_dirs=()

cleanup() {
    local item
    for item in "${tmp_dirs[@]}"; do
        rm -rf "$item"
    done
}
trap cleanup EXIT

die() {
    printf 'build-ee: %s\n' "$*" >&2
    exit 1
}

show_log_tail() {
    printf -- '--- last lines of %s ---\n' "$1" >&2
    tail -n 40 "$1" >&2 || true
    printf -- '--- end of %s ---\n' "$1" >&2
}

yaml_value() {
    "$bin/python" - "$@" <<'EOF'
import sys

import yaml

value = yaml.safe_load(open(sys.argv[1]))
for key in sys.argv[2:]:
    value = value[key]
print(value)
EOF
}

base_recipe() {
    { printf 'suite=%s\n' "$suite"; cat "$here/base-setup.sh"; sed -n '/^build_base()/,/^}/p' "$here/build-ee.sh"; } \
        | sha256sum | cut -d' ' -f1
}

build_base() {
    local image=$1 recipe=$2 log=$work/base-build.log tmp packages excludes=() line
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends mmdebstrap debian-archive-keyring; } >"$log" 2>&1 \
            || { show_log_tail "$log"; die "could not install mmdebstrap with apt-get (log: $log)"; }
    fi
    tmp=$(mktemp -d /var/tmp/revtunnel-ee-base.XXXXXX)
    tmp_dirs+=("$tmp")
    packages=$(bash "$here/base-setup.sh" --packages | paste -sd, -)
    while IFS= read -r line; do
        excludes+=("--dpkgopt=$line")
    done < <(bash "$here/base-setup.sh" --dpkg-excludes)
    # shellcheck disable=SC2016  # "$1" is the root directory, expanded by mmdebstrap
    if ! mmdebstrap --variant=apt --mode=root --format=tar --include="$packages" "${excludes[@]}" \
        --customize-hook="upload '$here/base-setup.sh' /tmp/base-setup.sh" \
        --customize-hook='chroot "$1" env REVTUNNEL_EE_IMAGE_BUILD=1 bash /tmp/base-setup.sh' \
        --customize-hook='rm -f "$1/tmp/base-setup.sh"' \
        "$suite" "$tmp/rootfs.tar" \
        "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security_mirror $suite-security main" \
        >"$log" 2>&1; then
        show_log_tail "$log"
        die "mmdebstrap of the EE base failed (log: $log); is $mirror reachable?"
    fi
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
        --change "LABEL revtunnel.recipe=$recipe" "$tmp/rootfs.tar" "$image" >>"$log" 2>&1 \
        || { show_log_tail "$log"; die "docker import of $image failed (log: $log)"; }
}

ensure_base() {
    local image=$1 force=$2 recipe current previous start
    recipe=$(base_recipe)
    current=$(docker image inspect -f '{{ index .Config.Labels "revtunnel.recipe" }}' "$image" 2>/dev/null || true)
    if [ "$force" -eq 0 ] && [ "$current" = "$recipe" ]; then
        printf 'build-ee: %s is up to date (recipe %.12s)\n' "$image" "$recipe"
        return 0
    fi
    previous=$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
    start=$(date +%s)
    build_base "$image" "$recipe"
    [ -z "$previous" ] || docker rmi "$previous" >/dev/null 2>&1 || true
    printf 'build-ee: %s built with mmdebstrap in %ss\n' "$image" "$(($(date +%s) - start))"
}

# The tarball's members and contents, without the timestamps that differ at every build.
tarball_digest() {
    "$bin/python" - "$1" <<'EOF'
import hashlib
import sys
import tarfile

digest = hashlib.sha256()
with tarfile.open(sys.argv[1]) as tar:
    for member in sorted(tar.getmembers(), key=lambda m: m.name):
        digest.update(f"{member.name}\0{member.mode}\0{member.type}\0".encode())
        if member.isfile():
            digest.update(tar.extractfile(member).read())
print(digest.hexdigest())
EOF
}

stage_collection() {
    local dist=$work/dist target=$work/hubspoke-revtunnel.tar.gz built
    rm -rf "$dist"
    "$bin/ansible-galaxy" collection build --force --output-path "$dist" "$root" >/dev/null
    built=$(ls "$dist"/hubspoke-revtunnel-*.tar.gz)
    if [ -f "$target" ] && [ "$(tarball_digest "$built")" = "$(tarball_digest "$target")" ]; then
        printf 'build-ee: collection %s unchanged\n' "${built##*/}"
    else
        cp "$built" "$target"
        printf 'build-ee: collection %s staged\n' "${built##*/}"
    fi
}

stage_ca_bundle() {
    [ -f "$ca_bundle" ] || die "no CA bundle at $ca_bundle (apt-get install ca-certificates, or set REVTUNNEL_EE_CA_BUNDLE)"
    # A copy, not a link: ansible-builder copies links as links into the build context.
    cmp -s "$ca_bundle" "$work/build-ca.crt" 2>/dev/null || cp "$ca_bundle" "$work/build-ca.crt"
}

main() {
    local force_base=0 arg base version previous start log
    for arg in "$@"; do
        case "$arg" in
            --force-base) force_base=1 ;;
            *) die "unknown argument '$arg' (usage: build-ee.sh [--force-base])" ;;
        esac
    done
    [ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and the Docker socket need it)"
    [ -x "$bin/ansible-builder" ] || die "$bin/ansible-builder is missing: run make venv"
    bash "$root/scripts/lab/ensure-docker.sh"
    mkdir -p "$work"

    exec 9>"$lock_file"
    flock -w 900 9 || die "another image build still holds $lock_file after 15 minutes"

    start=$(date +%s)
    base=$(yaml_value "$root/execution-environment.yml" images base_image name)
    version=$(yaml_value "$root/galaxy.yml" version)
    ensure_base "$base" "$force_base"
    stage_collection
    stage_ca_bundle

    log=$work/ansible-builder.log
    previous=$(docker image inspect -f '{{ .Id }}' "$repository:latest" 2>/dev/null || true)
    # The legacy builder uses the local base image as it is; BuildKit would look it up in a registry.
    if ! DOCKER_BUILDKIT=0 "$bin/ansible-builder" build --container-runtime docker -v 3 \
        --file "$root/execution-environment.yml" --context "$work/context" \
        --tag "$repository:$version" --tag "$repository:latest" >"$log" 2>&1; then
        show_log_tail "$log"
        die "ansible-builder build failed (log: $log)"
    fi
    # The image this build replaced is nameless now; drop it unless a container still uses it.
    if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{ .Id }}' "$repository:latest")" ]; then
        docker rmi "$previous" >/dev/null 2>&1 || true
    fi
    printf 'build-ee: %s:%s (and :latest) built in %ss\n' "$repository" "$version" "$(($(date +%s) - start))"
}

main "$@"
