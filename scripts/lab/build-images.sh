#!/usr/bin/env bash
# Build the lab's node images revtunnel-lab/debian:12 and revtunnel-lab/debian:13:
# Debian with systemd as PID 1 and sshd, one SSH host key set per container.
#
#   scripts/lab/build-images.sh [--force] [12|13 ...]      (default: 12 13)
#
# REVTUNNEL_LAB_BUILD=auto (default) | dockerfile | mmdebstrap
#   dockerfile: FROM debian:<version>, needs a reachable registry (or that image
#               already present locally);
#   mmdebstrap: the root filesystem comes from a Debian mirror, no registry needed;
#   auto:       dockerfile when debian:<version> is local or can be pulled quickly,
#               else mmdebstrap.
# REVTUNNEL_LAB_MIRROR, REVTUNNEL_LAB_SECURITY_MIRROR: Debian mirrors for mmdebstrap.
# REVTUNNEL_LAB_PULL_TIMEOUT: seconds the registry probe may take (default 20).
#
# Both recipes end in `docker build` of scripts/lab/Dockerfile, whose RUN is
# scripts/lab/image-setup.sh, so the two produce the same image. An image whose
# revtunnel.recipe label matches the current recipe is not rebuilt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repository=revtunnel-lab/debian
build_mode=${REVTUNNEL_LAB_BUILD:-auto}
mirror=${REVTUNNEL_LAB_MIRROR:-http://deb.debian.org/debian}
security_mirror=${REVTUNNEL_LAB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
pull_timeout=${REVTUNNEL_LAB_PULL_TIMEOUT:-20}
log_dir=/var/tmp
lock_file=/var/lock/revtunnel-lab-build.lock
cleanup_dirs=()
cleanup_tags=()

cleanup() {
    local item
    for item in "${cleanup_tags[@]}"; do
        docker rmi "$item" >/dev/null 2>&1 || true
    done
    for item in "${cleanup_dirs[@]}"; do
        rm -rf "$item"
    done
}
trap cleanup EXIT

die() {
    printf 'build-images: %s\n' "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s [--force] [12|13 ...]\n' "${0##*/}" >&2
    exit 2
}

suite_of() {
    case "$1" in
        12) echo bookworm ;;
        13) echo trixie ;;
        *) die "unsupported Debian version '$1' (supported: 12, 13)" ;;
    esac
}

# The recipe: everything that decides what ends up in the image.
recipe_hash() {
    local version=$1
    {
        printf 'debian-version=%s\n' "$version"
        cat "$here/build-images.sh" "$here/Dockerfile" "$here/image-setup.sh"
    } | sha256sum | cut -d' ' -f1
}

show_log_tail() {
    local log=$1
    printf -- '--- last lines of %s ---\n' "$log" >&2
    tail -n 40 "$log" >&2 || true
    printf -- '--- end of %s ---\n' "$log" >&2
}

ensure_host_packages() {
    command -v mmdebstrap >/dev/null 2>&1 && return 0
    [ "$(id -u)" -eq 0 ] || die "mmdebstrap is missing and only root can install it (apt-get install mmdebstrap)"
    local log=$log_dir/revtunnel-lab-apt.log
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            mmdebstrap debian-archive-keyring; } >"$log" 2>&1; then
        show_log_tail "$log"
        die "could not install mmdebstrap with apt-get (log: $log)"
    fi
}

# Prints the recipe to use for this version: dockerfile or mmdebstrap.
choose_method() {
    local version=$1
    case "$build_mode" in
        dockerfile | mmdebstrap)
            echo "$build_mode"
            return 0
            ;;
        auto) ;;
        *) die "REVTUNNEL_LAB_BUILD must be auto, dockerfile or mmdebstrap, not '$build_mode'" ;;
    esac
    if docker image inspect "debian:$version" >/dev/null 2>&1; then
        echo dockerfile
    elif timeout "$pull_timeout" docker pull -q "debian:$version" >/dev/null 2>&1; then
        echo dockerfile
    else
        echo mmdebstrap
    fi
}

# Build the root filesystem offline and import it as a local base image.
import_mmdebstrap_base() {
    local version=$1 base_tag=$2 workdir=$3 log=$4
    local suite excludes=() line packages
    suite=$(suite_of "$version")
    ensure_host_packages
    packages=$(bash "$here/image-setup.sh" --packages | paste -sd, -)
    while IFS= read -r line; do
        excludes+=("--dpkgopt=$line")
    done < <(bash "$here/image-setup.sh" --dpkg-excludes)

    # The provisioning runs here already so that the base layer is final: the
    # host keys openssh-server's postinst makes must not reach any layer.
    # shellcheck disable=SC2016  # "$1" is the root directory, expanded by mmdebstrap
    mmdebstrap --variant=apt --mode=root --format=tar \
        --include="$packages" \
        "${excludes[@]}" \
        --customize-hook="upload '$here/image-setup.sh' /tmp/image-setup.sh" \
        --customize-hook='chroot "$1" env REVTUNNEL_LAB_IMAGE_BUILD=1 bash /tmp/image-setup.sh' \
        --customize-hook='rm -f "$1/tmp/image-setup.sh"' \
        "$suite" "$workdir/rootfs.tar" \
        "deb $mirror $suite main" \
        "deb $mirror $suite-updates main" \
        "deb $security_mirror $suite-security main" \
        >>"$log" 2>&1 || return 1
    docker import "$workdir/rootfs.tar" "$base_tag" >>"$log" 2>&1 || return 1
    rm -f "$workdir/rootfs.tar"
}

build_one() {
    local version=$1 force=$2
    local image=$repository:$version recipe current previous_id method start log workdir base_image base_tag=""
    recipe=$(recipe_hash "$version")
    current=$(docker image inspect -f '{{ index .Config.Labels "revtunnel.recipe" }}' "$image" 2>/dev/null || true)
    previous_id=$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
    if [ "$force" -eq 0 ] && [ "$current" = "$recipe" ]; then
        printf '%s is up to date (recipe %.12s)\n' "$image" "$recipe"
        return 0
    fi

    start=$(date +%s)
    method=$(choose_method "$version")
    log=$log_dir/revtunnel-lab-build-$version.log
    : >"$log"
    workdir=$(mktemp -d /var/tmp/revtunnel-lab-build.XXXXXX)
    cleanup_dirs+=("$workdir")

    if [ "$method" = mmdebstrap ]; then
        base_tag=revtunnel-lab/rootfs:$version-$$
        cleanup_tags+=("$base_tag")
        if ! import_mmdebstrap_base "$version" "$base_tag" "$workdir" "$log"; then
            show_log_tail "$log"
            die "mmdebstrap build of $image failed (log: $log); is $mirror reachable?"
        fi
        base_image=$base_tag
    else
        base_image=debian:$version
    fi

    # The legacy builder uses local base images as they are; BuildKit would try to
    # resolve the base image in a registry, which is not reachable offline.
    if ! DOCKER_BUILDKIT=0 docker build \
        --build-arg "VERSION=$version" \
        --build-arg "BASE_IMAGE=$base_image" \
        --label "revtunnel.recipe=$recipe" \
        --label "revtunnel.build-method=$method" \
        --label "revtunnel.debian-version=$version" \
        --tag "$image" \
        "$here" >>"$log" 2>&1; then
        show_log_tail "$log"
        die "docker build of $image failed (log: $log)"
    fi
    # The final image keeps the layers; only the temporary name goes.
    if [ -n "$base_tag" ]; then
        docker rmi "$base_tag" >/dev/null 2>&1 || true
    fi
    rm -rf "$workdir"
    # The image this one replaces is now nameless; drop it unless a container uses it.
    if [ -n "$previous_id" ] && [ "$previous_id" != "$(docker image inspect -f '{{ .Id }}' "$image")" ]; then
        docker rmi "$previous_id" >/dev/null 2>&1 || true
    fi
    printf '%s built with %s in %ss\n' "$image" "$method" "$(($(date +%s) - start))"
}

main() {
    local force=0 versions=() arg version
    for arg in "$@"; do
        case "$arg" in
            --force) force=1 ;;
            12 | 13) versions+=("$arg") ;;
            -h | --help) usage ;;
            *) printf 'build-images: unknown argument %s\n' "$arg" >&2; usage ;;
        esac
    done
    [ "${#versions[@]}" -gt 0 ] || versions=(12 13)

    [ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and the Docker socket need it)"
    bash "$here/ensure-docker.sh"

    # Other checkouts on this machine share the Docker daemon: build one at a time.
    exec 9>"$lock_file"
    flock -w 900 9 || die "another build-images.sh still holds $lock_file after 15 minutes"

    for version in "${versions[@]}"; do
        build_one "$version" "$force"
    done
}

main "$@"
