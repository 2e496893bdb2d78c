#!/usr/bin/env bash
# Provision the execution environment's base root filesystem (Debian 12, Python 3.11), inside it, as root.
#
# scripts/ee/build-ee.sh runs it with chroot from an mmdebstrap hook. ansible-builder then adds pip,
# ansible-core, ansible-runner, the collection and its system packages on top (execution-environment.yml).
#
#   REVTUNNEL_EE_IMAGE_BUILD=1 base-setup.sh   configure, clean up
#   base-setup.sh --packages                    print the package list (one per line)
#   base-setup.sh --dpkg-excludes               print the dpkg path filters (one per line)
set -euo pipefail

# Debian's pip: Debian disables ensurepip for its python3 (even with python3-venv), which is how
# ansible-builder would install pip, so execution-environment.yml sets skip_pip_install.
# No OpenSSH client: the collection's bindep file (meta/ee-bindep.txt) is what puts it in the image.
base_packages=(
    python3
    python3-pip
    ca-certificates
)

dpkg_excludes=(
    'path-exclude=/usr/share/doc/*'
    'path-include=/usr/share/doc/*/copyright'
    'path-exclude=/usr/share/man/*'
    'path-exclude=/usr/share/info/*'
    'path-exclude=/usr/share/locale/*'
    'path-include=/usr/share/locale/locale.alias'
)

# What ansible-builder's scripts run as $PKGMGR (options.package_manager_path in execution-environment.yml).
package_manager=/usr/local/sbin/builder-apt-get

die() {
    printf 'base-setup: %s\n' "$*" >&2
    exit 1
}

# ansible-builder speaks dnf: "$PKGMGR install -y PKG..." and "$PKGMGR clean all". apt-get needs its
# package lists first and has no "clean all"; this wrapper translates, and installs no Recommends.
write_package_manager() {
    cat >"$package_manager" <<'EOF'
#!/bin/sh
# ansible-builder's package manager calls (dnf syntax) carried out with apt-get; see scripts/ee/base-setup.sh.
set -eu
export DEBIAN_FRONTEND=noninteractive
case "${1:-}" in
    install)
        shift
        if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
            apt-get update -qq
        fi
        exec apt-get install --no-install-recommends -q -o Dpkg::Use-Pty=0 "$@"
        ;;
    clean)
        apt-get clean
        rm -rf /var/lib/apt/lists/*
        ;;
    *)
        exec apt-get "$@"
        ;;
esac
EOF
    chmod 0755 "$package_manager"
}

write_dpkg_excludes() {
    mkdir -p /etc/dpkg/dpkg.cfg.d
    printf '%s\n' "${dpkg_excludes[@]}" >/etc/dpkg/dpkg.cfg.d/revtunnel-ee-nodoc
}

clean_up() {
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old \
        /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log /var/log/bootstrap.log /tmp/* /var/tmp/*
    find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find /usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf /usr/share/man/* /usr/share/info/*
    find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
}

main() {
    case "${1:-}" in
        --packages)
            printf '%s\n' "${base_packages[@]}"
            return 0
            ;;
        --dpkg-excludes)
            printf '%s\n' "${dpkg_excludes[@]}"
            return 0
            ;;
        '') ;;
        *) die "unknown argument '$1' (use --packages, --dpkg-excludes or nothing)" ;;
    esac
    [ "$(id -u)" -eq 0 ] || die "must run as root inside the image's root filesystem"
    [ -f /etc/debian_version ] || die "this is not a Debian root filesystem"
    [ "${REVTUNNEL_EE_IMAGE_BUILD:-}" = 1 ] \
        || die "refusing to run outside an image build (REVTUNNEL_EE_IMAGE_BUILD=1 is not set)"
    write_dpkg_excludes
    write_package_manager
    clean_up
}

main "$@"
