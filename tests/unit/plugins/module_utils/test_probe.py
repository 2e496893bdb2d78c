# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The banner probe against real sockets on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _probe as probe


@contextmanager
def server(behaviour):
    """A loopback TCP server that runs ``behaviour(conn)`` for each connection; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _peer = listener.accept()
            except OSError:
                continue
            threading.Thread(target=lambda c=conn: _run(behaviour, c), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], listener
    finally:
        stop.set()
        thread.join()
        listener.close()


def _run(behaviour, conn):
    try:
        behaviour(conn)
    except OSError:
        pass
    finally:
        conn.close()


def banner(text):
    return lambda conn: (conn.sendall(text), time.sleep(0.5))


def trickle(conn):
    for _byte in range(40):
        conn.sendall(b"S")
        time.sleep(0.25)


def test_an_ssh_banner_is_up():
    with server(banner(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")) as (port, _listener):
        result = probe.probe_ssh(port, timeout=2)
    assert result.up and result.detail == "SSH-2.0-OpenSSH_9.2p1 Debian"


def test_a_port_that_closes_at_once_is_down():
    with server(lambda conn: None) as (port, _listener):
        result = probe.probe_ssh(port, timeout=2)
    assert not result.up and result.detail == "no SSH banner"


def test_nothing_listening_is_down():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = probe.probe_ssh(port, timeout=1)
    assert not result.up


def test_control_bytes_from_a_spoke_never_come_back():
    evil = b"SSH-2.0-\x1b]0;pwned\x07\x1b[2Jx\r\n"
    with server(banner(evil)) as (port, _listener):
        result = probe.probe_ssh(port, timeout=2)
    assert all(" " <= ch <= "~" for ch in result.detail)
    assert "pwned" in result.detail and "\x1b" not in result.detail


def test_a_trickling_port_is_cut_at_the_total_deadline():
    with server(trickle) as (port, _listener):
        start = time.monotonic()
        result = probe.probe_ssh(port, timeout=1.0)
        elapsed = time.monotonic() - start
    assert not result.up
    assert elapsed < 1.6, f"the probe ran {elapsed:.2f} s past a 1 s deadline"


def test_a_silent_service_that_holds_the_connection_is_up():
    with server(lambda conn: time.sleep(1.5)) as (port, _listener):
        assert probe.probe_stream(port, timeout=2, settle=0.3).up


def test_listening_inodes_finds_the_socket_and_changes_with_it():
    with server(lambda conn: None) as (port, listener):
        inode = str(os.fstat(listener.fileno()).st_ino)
        assert probe.listening_inodes(port) == [inode]
    assert probe.listening_inodes(port) == []


def test_wait_ignores_the_replaced_session_until_a_new_one_holds_the_port():
    with server(banner(b"SSH-2.0-old\r\n")) as (port, listener):
        old = probe.listening_inodes(port)
        start = time.monotonic()
        result, held = probe.wait_for_tunnel(port, timeout=1.0, replaced=old, interval=0.1)
        assert not result.up and held == old
        assert "replaced session" in result.detail
        assert time.monotonic() - start < 2.0
        # without a session to ignore, the same port passes at once
        result, _held = probe.wait_for_tunnel(port, timeout=1.0, interval=0.1)
        assert result.up


def test_the_module_waits_and_reports(collections_root):
    with server(banner(b"SSH-2.0-spoke\r\n")) as (port, _listener):
        out = _run_module(collections_root, {"port": port, "timeout": 3})
        assert out["up"] is True and out["detail"] == "SSH-2.0-spoke" and out["changed"] is False
        assert out["listener"]
        down = _run_module(collections_root, {"port": port, "timeout": 0.6, "replaced_listener": out["listener"]})
        assert down.get("failed") and "does not lead to the spoke" in down["msg"]
        once = _run_module(collections_root, {"port": port, "wait": False, "replaced_listener": out["listener"]})
        assert once["up"] is True and not once.get("failed")


def _run_module(collections_root, args):
    module = collections_root / "ansible_collections/hubspoke/revtunnel/plugins/modules/tunnel_probe.py"
    python_path = os.pathsep.join(filter(None, [str(collections_root), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(module)], input=json.dumps({"ANSIBLE_MODULE_ARGS": args}),
                          capture_output=True, text=True, timeout=30, check=False,
                          env=dict(os.environ, PYTHONPATH=python_path))
    return json.loads(proc.stdout)


def test_many_tunnels_are_waited_for_at_once_each_with_its_own_timeout():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    free_port = closed.getsockname()[1]
    closed.close()
    with server(banner(b"SSH-2.0-a\r\n")) as (port_a, _a), server(lambda conn: None) as (port_b, _b):
        start = time.monotonic()
        found = probe.wait_for_tunnels([
            {"name": "pc-a", "port": port_a, "timeout": 5},
            {"name": "pc-b", "port": port_b, "timeout": 2.0},   # bound, but leads nowhere
            {"name": "pc-c", "port": free_port, "timeout": 2.0},
        ], interval=0.2)
        took = time.monotonic() - start
    assert found["pc-a"][0].up and found["pc-a"][0].detail == "SSH-2.0-a" and found["pc-a"][1]
    assert not found["pc-b"][0].up and "banner" in found["pc-b"][0].detail
    assert not found["pc-c"][0].up and found["pc-c"][0].detail == "nothing listens on the port"
    # in parallel: the two failures share their 2 s instead of adding up to 4 (the margin is for a loaded machine),
    # and the good one does not wait for them
    assert took < 4.0 and found["pc-a"][0].seconds < 1.5


def test_the_batch_waits_for_a_new_session_where_a_restart_replaces_one():
    with server(banner(b"SSH-2.0-old\r\n")) as (port, _listener):
        old = probe.listening_inodes(port)
        found = probe.wait_for_tunnels([{"name": "pc-1", "port": port, "timeout": 0.8, "replaced_listener": old}],
                                       interval=0.2)
        assert not found["pc-1"][0].up and found["pc-1"][0].detail == "the replaced session still holds the port"
        again = probe.wait_for_tunnels([{"name": "pc-1", "port": port, "timeout": 0.8, "replaced_listener": ["1"]}])
        assert again["pc-1"][0].up


def test_one_read_of_proc_serves_every_port():
    with server(banner(b"SSH-2.0-x\r\n")) as (port, _listener):
        table = probe.listening_sockets()
        assert table[port] == probe.listening_inodes(port) != []


def test_the_module_reports_each_of_many_tunnels_without_failing(collections_root):
    with server(banner(b"SSH-2.0-spoke\r\n")) as (port, _listener):
        out = _run_module(collections_root, {"probes": [{"name": "pc-1", "port": port},
                                                        {"name": "pc-2", "port": port, "timeout": 0.5,
                                                         "replaced_listener": probe.listening_inodes(port)}],
                                             "timeout": 3})
    assert not out.get("failed") and out["up"] is False and out["detail"] == "1 of 2 up"
    assert out["probes"]["pc-1"]["up"] and out["probes"]["pc-1"]["detail"] == "SSH-2.0-spoke"
    assert not out["probes"]["pc-2"]["up"]
    twice = _run_module(collections_root, {"probes": [{"name": "pc-1", "port": 1}, {"name": "pc-1", "port": 2}]})
    assert twice.get("failed") and "once" in twice["msg"]
    both = _run_module(collections_root, {"port": 1, "probes": [{"name": "pc-1", "port": 1}]})
    assert both.get("failed") and "mutually exclusive" in both["msg"]


def test_a_probe_that_waited_in_the_queue_past_its_deadline_is_not_run():
    result, passed = probe._probe_listener({"port": 1, "forward": "ssh"}, ["42"], deadline=10.0, host="127.0.0.1",
                                           probe_timeout=3.0, clock=lambda: 11.0)
    assert not passed and result.detail == "no time left for the probe"
