#!/usr/bin/env bash
# Provision a Debian root filesystem as a systemd-booting lab node.
#
# Shared by both image recipes so they produce the same image:
#   - scripts/lab/Dockerfile runs it with RUN on top of debian:<version>;
#   - scripts/lab/build-images.sh runs it with chroot from an mmdebstrap hook.
# It runs *inside* the target root filesystem, as root, never on the host.
#
#   REVTUNNEL_LAB_IMAGE_BUILD=1 image-setup.sh
#                               install what is missing, configure, clean up
#   image-setup.sh --packages   print the package list (one per line)
#   image-setup.sh --dpkg-excludes
#                               print the dpkg path filters (one per line)
set -euo pipefail

# Keep this list small: every role and test of the project runs on it.
lab_packages=(
    systemd
    systemd-sysv
    openssh-server
    openssh-client
    python3
    sudo
    iproute2
    iptables
    procps
    netcat-openbsd
    ca-certificates
)

# Documentation and translations are dead weight in a throw-away lab node.
dpkg_excludes=(
    'path-exclude=/usr/share/doc/*'
    'path-include=/usr/share/doc/*/copyright'
    'path-exclude=/usr/share/man/*'
    'path-exclude=/usr/share/info/*'
    'path-exclude=/usr/share/locale/*'
    'path-include=/usr/share/locale/locale.alias'
)

# Units that have no job in a container, or that would disturb a test run.
masked_units=(
    getty.target
    console-getty.service
    getty@tty1.service
    serial-getty@.service
    systemd-udevd.service
    systemd-udevd-control.socket
    systemd-udevd-kernel.socket
    systemd-networkd.service
    systemd-networkd.socket
    systemd-networkd-wait-online.service
    systemd-resolved.service
    systemd-timesyncd.service
    systemd-firstboot.service
    # a timer firing apt mid-test takes the dpkg lock from the roles under test
    apt-daily.timer
    apt-daily-upgrade.timer
    apt-daily.service
    apt-daily-upgrade.service
    e2scrub_all.timer
    e2scrub_reap.service
    fstrim.timer
)

hostkey_unit=revtunnel-lab-ssh-hostkeys.service

die() {
    printf 'image-setup: %s\n' "$*" >&2
    exit 1
}

install_missing_packages() {
    local missing=() pkg
    for pkg in "${lab_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0

    # No init system runs while the image is built: keep maintainer scripts from
    # trying to start daemons (sshd would fail, or linger in the build step).
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (is a Debian mirror reachable?)"
    apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    [ "$own_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

install_hostkey_unit() {
    # Every container must have its own SSH host keys, so the image carries none.
    # bookworm's ssh.service does not make missing keys (its ExecStartPre `sshd -t`
    # fails without them) and trixie's sshd-keygen.service only runs on
    # ConditionFirstBoot, which an image with an empty /etc/machine-id does not meet.
    cat >/etc/systemd/system/"$hostkey_unit" <<'EOF'
[Unit]
Description=Generate this lab node's own SSH host keys
Documentation=file:///usr/local/share/revtunnel-lab/README
Before=ssh.service ssh.socket sshd.service sshd@.service
ConditionPathIsReadWrite=/etc/ssh

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target ssh.service ssh.socket
EOF
    systemctl enable --quiet "$hostkey_unit"
}

configure() {
    [ -x /usr/bin/ssh-keygen ] || die "openssh-client is not installed"
    [ -d /etc/ssh ] || die "openssh-server is not installed"

    install_hostkey_unit
    rm -f /etc/ssh/ssh_host_*

    systemctl mask --quiet "${masked_units[@]}"
    systemctl set-default --quiet multi-user.target
    systemctl enable --quiet ssh.service

    # Empty machine-id: systemd gives each container its own at boot, and the
    # boot does not count as a first boot (no firstboot prompts, no presets).
    : >/etc/machine-id
    rm -f /var/lib/dbus/machine-id

    # root: no password that could ever match, and no password login at all.
    usermod -p '*' root

    mkdir -p /usr/local/share/revtunnel-lab
    printf '%s\n' \
        'revtunnel lab node: a throw-away test container, not a server.' \
        'SSH host keys are made at boot by revtunnel-lab-ssh-hostkeys.service.' \
        >/usr/local/share/revtunnel-lab/README
}

clean_up() {
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
        /var/lib/dpkg/*-old /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log \
        /var/log/bootstrap.log /tmp/* /var/tmp/*
    # Files the base image had before the dpkg path filters were in place.
    find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find /usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf /usr/share/man/* /usr/share/info/*
    find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias \
        -exec rm -rf {} + 2>/dev/null || true
}

write_dpkg_excludes() {
    mkdir -p /etc/dpkg/dpkg.cfg.d
    printf '%s\n' "${dpkg_excludes[@]}" >/etc/dpkg/dpkg.cfg.d/revtunnel-lab-nodoc
}

main() {
    case "${1:-}" in
        --packages)
            printf '%s\n' "${lab_packages[@]}"
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
    # Both recipes set this; without it we may be on a real machine by accident.
    [ "${REVTUNNEL_LAB_IMAGE_BUILD:-}" = 1 ] \
        || die "refusing to run outside an image build (REVTUNNEL_LAB_IMAGE_BUILD=1 is not set)"

    write_dpkg_excludes
    install_missing_packages
    configure
    clean_up
}

main "$@"
