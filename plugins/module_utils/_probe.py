# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one end-to-end test of a tunnel: what the hub reads on a spoke's loopback port.

Pure Python with no Ansible import. The modules, the hub's commands (status, metrics, reaper) and the
spoke's watchdog all probe through this file, so the banner test is written once.

A forwarded ssh port is up only when an SSH banner comes back through it: a port that is bound
but leads nowhere (the spoke's sshd is down, or a stale session holds it) reads nothing or EOF.
Another forward is up when the far end keeps the connection open or answers.

Each probe has one total deadline, not one per recv, so a port that trickles a byte at a time
cannot stall a caller; whatever a spoke sends is made printable before it is returned.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _procfs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._procfs import listening_inodes, listening_sockets

BANNER_LIMIT = 256
NO_TIME_LEFT = "no time left for the probe"
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: up or not, why, and how long it took."""

    up: bool
    detail: str
    seconds: float


def printable(data, limit=80):
    """Bytes or text from a peer as one safe line: every non-printable character becomes '?'."""
    if isinstance(data, bytes):
        data = data.decode("ascii", "replace")
    text = "".join(ch if (" " <= ch <= "~") else "?" for ch in data)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_first_line(port, deadline, host=DEFAULT_HOST, limit=BANNER_LIMIT):
    """Connect and read up to the first newline, all within ``deadline`` (a time.monotonic() value).

    Returns the bytes read (possibly without a newline when the peer closed or the time ran out).
    Raises OSError when the connection cannot be made; socket.timeout when nothing came in time.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout(NO_TIME_LEFT)
    with socket.create_connection((host, port), timeout=remaining) as conn:
        data = b""
        while b"\n" not in data and len(data) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if data:
                    break
                raise socket.timeout("no banner before the deadline")
            conn.settimeout(remaining)
            try:
                chunk = conn.recv(limit - len(data))
            except socket.timeout:
                if data:
                    break
                raise
            if not chunk:
                break
            data += chunk
    return data


def probe_ssh(port, timeout=3.0, host=DEFAULT_HOST):
    """Up when the first line read through the port within ``timeout`` seconds is an SSH banner."""
    start = time.monotonic()
    try:
        data = read_first_line(port, start + timeout, host=host)
    except socket.timeout:
        return ProbeResult(False, "no SSH banner in time", time.monotonic() - start)
    except OSError as exc:
        return ProbeResult(False, printable(exc.strerror or type(exc).__name__), time.monotonic() - start)
    elapsed = time.monotonic() - start
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if line.startswith(b"SSH-") and b"\n" in data:
        return ProbeResult(True, printable(line), elapsed)
    if not line:
        return ProbeResult(False, "no SSH banner", elapsed)
    return ProbeResult(False, "not an SSH banner: " + printable(line, 40), elapsed)


def probe_stream(port, timeout=3.0, host=DEFAULT_HOST, settle=0.5):
    """A forward to a silent service: up when the connection stays open for ``settle`` s or data comes."""
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(max(0.01, min(settle, start + timeout - time.monotonic())))
            try:
                data = conn.recv(1)
            except socket.timeout:
                return ProbeResult(True, "connection held open", time.monotonic() - start)
    except OSError as exc:
        return ProbeResult(False, printable(exc.strerror or type(exc).__name__), time.monotonic() - start)
    if data:
        return ProbeResult(True, "service answered", time.monotonic() - start)
    return ProbeResult(False, "closed at once: the tunnel leads nowhere", time.monotonic() - start)


def probe_forward(forward, port, timeout=3.0, host=DEFAULT_HOST):
    """The probe that fits a forward: the banner test for ``ssh``, the stream test for the others."""
    if forward == "ssh":
        return probe_ssh(port, timeout, host=host)
    return probe_stream(port, timeout, host=host)


def wait_for_tunnel(port, forward="ssh", timeout=90.0, replaced=(), interval=0.5, host=DEFAULT_HOST,
                    probe_timeout=3.0, clock=time.monotonic, sleep=time.sleep, inodes=listening_inodes):
    """Wait until the port leads to the spoke (the probe passes) through a session that is not ``replaced``.

    ``replaced`` lists the listening-socket inodes of the session that a restart replaces: until the port
    is held by another socket, the old session still answers and proves nothing. Returns
    (ProbeResult, listener inodes); the result is the last failed probe when the time runs out.
    """
    replaced = set(replaced)
    start = clock()
    deadline = start + timeout
    result = ProbeResult(False, "not probed yet", 0.0)
    while True:
        listener = inodes(port)
        if listener and not replaced.intersection(listener):
            result = probe_forward(forward, port, min(probe_timeout, max(0.1, deadline - clock())), host=host)
            if result.up:
                return ProbeResult(True, result.detail, clock() - start), listener
        elif listener:
            result = ProbeResult(False, "the replaced session still holds the port", clock() - start)
        else:
            result = ProbeResult(False, "nothing listens on the port", clock() - start)
        if clock() + interval > deadline:
            return ProbeResult(False, result.detail, clock() - start), listener
        sleep(interval)


def _probe_listener(probe, listener, deadline, host, probe_timeout, clock=time.monotonic):
    """One round for one tunnel: (ProbeResult, passed) given the listener read for its port.

    The time left is taken when the probe starts, not when it was queued, so a long queue cannot carry a
    probe past its tunnel's deadline.
    """
    remaining = deadline - clock()
    if listener and not set(probe.get("replaced_listener") or ()).intersection(listener):
        if remaining <= 0:
            return ProbeResult(False, NO_TIME_LEFT, 0.0), False
        result = probe_forward(probe.get("forward", "ssh"), probe["port"], min(probe_timeout, max(0.1, remaining)),
                               host=host)
        return result, result.up
    if listener:
        return ProbeResult(False, "the replaced session still holds the port", 0.0), False
    return ProbeResult(False, "nothing listens on the port", 0.0), False


def wait_for_tunnels(probes, interval=0.5, host=DEFAULT_HOST, probe_timeout=3.0, clock=time.monotonic,
                     sleep=time.sleep, sockets=listening_sockets, workers=32):
    """wait_for_tunnel for many tunnels at once: {name: (ProbeResult, listener inodes)}.

    Each probe is a dict with ``name``, ``port``, ``timeout`` and optionally ``forward`` and
    ``replaced_listener``. Every round reads the listening sockets once for all ports and probes the
    pending tunnels in parallel; a tunnel leaves the round when it passes or when its own timeout runs out.
    """
    start = clock()
    pending = {probe["name"]: probe for probe in probes}
    last, done = {}, {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pending)))) as pool:
        while pending:
            table = sockets()
            rounds = {}
            for name, probe in pending.items():
                listener = table.get(probe["port"], [])
                rounds[name] = (pool.submit(_probe_listener, probe, listener, start + probe["timeout"], host,
                                            probe_timeout, clock), listener)
            for name, (future, listener) in rounds.items():
                result, passed = future.result()
                if passed:
                    done[name] = (ProbeResult(True, result.detail, clock() - start), listener)
                    del pending[name]
                elif name not in last or result.detail != NO_TIME_LEFT:
                    # A round queued past the deadline says nothing new: the last real probe's reason stands.
                    last[name] = (result, listener)
            now = clock()
            for name in [name for name, probe in pending.items() if now + interval > start + probe["timeout"]]:
                result, listener = last[name]
                done[name] = (ProbeResult(False, result.detail, now - start), listener)
                del pending[name]
            if pending:
                sleep(interval)
    return done


def squatters(ports, owner_uid, sockets=None):
    """{port: socket} of the PORTS that another account than OWNER_UID listens on or holds bound (a listener first)."""
    found = {}
    for sock in _procfs.foreign_holders(_procfs.tcp_sockets() if sockets is None else sockets, ports, owner_uid):
        if sock.port not in found or sock.state == _procfs.TCP_LISTEN:
            found[sock.port] = sock
    return found


def squat_detail(sock):
    """One line naming the account that holds a spoke's port."""
    how = "listens on" if sock.state == _procfs.TCP_LISTEN else "holds a socket bound to"
    return f"squatted: account {_procfs.account(sock.uid)} (uid {sock.uid}) {how} the port, not the tunnel's session"


def check_all(spokes, timeout=3.0, workers=32, host=DEFAULT_HOST, owner_uid=None, sockets=None):
    """One row per spoke forward of a registry's spokes, sorted: spoke, forward, port, up, latency_ms, seconds,
    detail, squatted_by. The probes run in parallel, each with its own deadline; names and details come out
    printable. With OWNER_UID (the tunnel account's uid) a port that another account listens on or holds is down
    and squatted, whatever answers on it: only the tunnel account's sshd session makes a tunnel up."""
    targets = [(spoke, forward, port) for spoke in sorted(spokes)
               for forward, port in sorted(spokes[spoke]["ports"].items())]
    if not targets:
        return []
    foreign = {} if owner_uid is None else squatters([t[2] for t in targets], owner_uid, sockets)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool:
        results = list(pool.map(lambda t: probe_forward(t[1], t[2], timeout, host=host), targets))
    rows = []
    for (spoke, forward, port), result in zip(targets, results):
        squat = foreign.get(port)
        detail = result.detail if squat is None else squat_detail(squat) + (
            f" (it answers: {result.detail})" if result.up else "")
        rows.append({
            "spoke": printable(spoke),
            "forward": printable(forward),
            "port": port,
            "up": result.up and squat is None,
            "latency_ms": round(result.seconds * 1000, 1),
            "seconds": result.seconds,
            "detail": printable(detail, 160),
            "squatted_by": None if squat is None else printable(_procfs.account(squat.uid)),
        })
    return rows
