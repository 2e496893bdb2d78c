#!/usr/bin/env bash
# Make sure a Docker daemon answers `docker info`; install and start one if not.
#
#   scripts/lab/ensure-docker.sh
#
# Installs Debian's docker.io when dockerd is missing; starts it with systemctl when
# systemd is PID 1, otherwise in the background with its log in
# /var/log/revtunnel-dockerd.log. Quiet when all is well; safe to run repeatedly.
#
# REVTUNNEL_DOCKERD_ARGS: extra dockerd flags, e.g. "--storage-driver=vfs" where
#                         overlayfs is not available (root on overlayfs, old kernel).
# REVTUNNEL_DOCKER_WAIT:  seconds to wait for the daemon (default 60).
set -euo pipefail

dockerd_log=/var/log/revtunnel-dockerd.log
wait_seconds=${REVTUNNEL_DOCKER_WAIT:-60}
lock_file=/var/lock/revtunnel-ensure-docker.lock
started_pid=""

die() {
    printf 'ensure-docker: %s\n' "$*" >&2
    exit 1
}

note() {
    printf 'ensure-docker: %s\n' "$*" >&2
}

docker_answers() {
    command -v docker >/dev/null 2>&1 || return 1
    timeout 20 docker info >/dev/null 2>&1
}

systemd_is_init() {
    [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]
}

install_docker() {
    [ "$(id -u)" -eq 0 ] || die "dockerd is not installed and only root can install it (apt-get install docker.io)"
    local log=/var/tmp/revtunnel-docker-apt.log
    note "installing docker.io with apt-get (log: $log)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends \
            docker.io iptables ca-certificates; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2 || true
        die "apt-get could not install docker.io (log: $log)"
    fi
}

# dockerd programs NAT and filter rules with whatever `iptables` points to. On
# kernels without nf_tables the nft variant fails and dockerd refuses to start.
check_iptables() {
    command -v iptables >/dev/null 2>&1 || return 0
    iptables -w -t nat -L -n >/dev/null 2>&1 && return 0
    if command -v iptables-legacy >/dev/null 2>&1 && iptables-legacy -w -t nat -L -n >/dev/null 2>&1; then
        note "iptables (nf_tables) does not work on this kernel: switching the alternatives to iptables-legacy"
        update-alternatives --quiet --set iptables /usr/sbin/iptables-legacy
        update-alternatives --quiet --set ip6tables /usr/sbin/ip6tables-legacy 2>/dev/null || true
        return 0
    fi
    note "neither iptables-nft nor iptables-legacy works; dockerd will probably fail (try REVTUNNEL_DOCKERD_ARGS=--iptables=false)"
}

dockerd_running() {
    local pid
    [ -s /var/run/docker.pid ] || return 1
    pid=$(cat /var/run/docker.pid)
    [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]
}

start_dockerd_background() {
    [ "$(id -u)" -eq 0 ] || die "the Docker daemon is not running and only root can start it"
    if dockerd_running; then
        return 0 # started earlier and still coming up: just wait for it
    fi
    check_iptables
    printf '\n=== %s ensure-docker.sh: starting dockerd %s\n' \
        "$(date -Is)" "${REVTUNNEL_DOCKERD_ARGS:-}" >>"$dockerd_log"
    # setsid + nohup: the daemon must outlive this script and the CI step's shell.
    # shellcheck disable=SC2086  # REVTUNNEL_DOCKERD_ARGS is a list of flags
    setsid nohup dockerd ${REVTUNNEL_DOCKERD_ARGS:-} >>"$dockerd_log" 2>&1 </dev/null &
    started_pid=$!
}

explain_failure() {
    printf 'ensure-docker: %s\n' "$1" >&2
    if systemd_is_init; then
        systemctl --no-pager status docker.service >&2 || true
        journalctl --no-pager -u docker.service -n 30 >&2 || true
    elif [ -f "$dockerd_log" ]; then
        printf -- '--- warnings and errors of the last start, from %s ---\n' "$dockerd_log" >&2
        # Only this start's lines, and not the daemon's chatty level=info ones.
        awk '/^=== .* ensure-docker.sh: starting dockerd/ { n = 0 } { line[n++] = $0 }
             END { for (i = 0; i < n; i++) print line[i] }' "$dockerd_log" \
            | grep -v 'level=info' | tail -n 20 >&2 || true
        printf -- '--- end ---\n' >&2
        grep -qiE 'overlay.*(not supported|invalid argument)|driver not supported' "$dockerd_log" \
            && printf 'hint: overlayfs does not work here; retry with REVTUNNEL_DOCKERD_ARGS=--storage-driver=vfs\n' >&2
        grep -qiE 'iptables' "$dockerd_log" \
            && printf 'hint: iptables failed; check "iptables -t nat -L" and "update-alternatives --display iptables"\n' >&2
        grep -qi 'pid file found' "$dockerd_log" \
            && printf 'hint: a stale /var/run/docker.pid blocks the start; remove it if no dockerd runs\n' >&2
    fi
    if command -v docker >/dev/null 2>&1; then
        printf 'docker info says:\n' >&2
        timeout 20 docker info 2>&1 | tail -n 5 >&2 || true
    fi
    exit 1
}

main() {
    docker_answers && return 0

    command -v dockerd >/dev/null 2>&1 || install_docker
    command -v docker >/dev/null 2>&1 || install_docker
    command -v dockerd >/dev/null 2>&1 || die "dockerd is still missing after installing docker.io"

    # Two scripts starting two daemons on one socket would fight: one at a time.
    exec 9>"$lock_file"
    flock -w "$((wait_seconds + 30))" 9 || die "another ensure-docker.sh holds $lock_file"
    docker_answers && return 0

    if systemd_is_init; then
        systemctl start docker.service || explain_failure "systemctl start docker.service failed"
    else
        start_dockerd_background
    fi

    local deadline=$((SECONDS + wait_seconds))
    until docker_answers; do
        [ "$SECONDS" -lt "$deadline" ] \
            || explain_failure "the Docker daemon did not answer within ${wait_seconds}s"
        # A daemon that already exited will not answer: say why now, not in a minute.
        if [ -n "$started_pid" ] && ! kill -0 "$started_pid" 2>/dev/null; then
            explain_failure "dockerd exited during its start"
        fi
        sleep 1
    done
}

main "$@"
