# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tunnel watchdog: reading the kernel's view of ssh's connection, and when it ends a session."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _procfs
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import watch

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode")
# ssh's connection to the hub, healthy (keep-alive timer only), then with 0x208 bytes waiting on a retransmission.
IDLE = ("   3: 0C2AD50A:A9B4 0A2AD50A:0016 01 00000000:00000000 02:000AEF6A 00000000   997        0 228149 2 "
        "000000003fe3c913 20 4 30 38 -1")
STALLED = ("   3: 0C2AD50A:A9B4 0A2AD50A:0016 01 00000208:00000000 01:00000A4F 00000007   997        0 228149 2 "
           "000000003fe3c913 1221 4 24 1 -1")
PROBING = ("   3: 0C2AD50A:A9B4 0A2AD50A:0016 01 000000D0:00000000 04:000003C4 00000000   997        1 228149 2 "
           "000000003fe3c913 690 4 16 68 -1")
V6 = ("   0: 0000000000000000FFFF00000C2AD50A:A9B4 0000000000000000FFFF00000A2AD50A:0016 01 00000034:00000000 "
      "01:00000010 00000000   997        0 99 1 0000000000000000 20 4 0 10 -1")


def parse(line):
    """The one /proc parser (_procfs) on one line under the header."""
    rows = _procfs.parse_tcp(HEADER + "\n" + line)
    return rows[0] if rows else None


def sample(unacked, timer=1, when=1.0, probes=0):
    return _procfs.TcpSocket(port=43444, state="01", uid=997, inode="1", local="0C2AD50A", remote="0A2AD50A:0016",
                             unacked=unacked, timer=timer, when=when, probes=probes)


def test_parse_reads_addresses_queue_and_timer():
    assert _procfs.parse_tcp(HEADER) == []
    row = parse(STALLED)
    assert (row.local_address, row.remote_address, row.state) == (("10.213.42.12", 43444), ("10.213.42.10", 22), "01")
    assert (row.unacked, row.timer, row.retransmits, row.inode, row.uid) == (0x208, 1, 7, "228149", 997)
    assert row.when == pytest.approx(26.39)
    assert parse(PROBING).probes == 1
    assert parse(V6).local_address == ("10.213.42.12", 43444)


def test_progress_is_an_acknowledgement_or_an_answered_window_probe():
    idle, stalled = parse(IDLE), parse(STALLED)
    assert watch.progressed(idle, stalled)
    assert not watch.progressed(stalled, None)
    assert not watch.progressed(stalled, sample(0x100))  # the queue only grew: keep-alives nobody acknowledged
    assert watch.progressed(sample(0x100), stalled)  # it shrank: the hub acknowledged some
    assert watch.progressed(sample(0x100, timer=4, probes=0), None)  # a zero window the hub keeps answering
    assert not watch.progressed(parse(PROBING), None)


def run(w, samples, answers=True, have_local=True):
    """Feed (time, unacked) samples; the actions taken."""
    out = []
    for now, unacked in samples:
        action, message = w.step(now, sample(unacked, when=3.0), lambda: answers, lambda ip: have_local)
        out.append((now, action, message))
    return [(now, action, message) for now, action, message in out if action]


def test_a_cut_link_is_waited_out():
    w = watch.Watch(silent_after=4, resume_wait=30)
    assert run(w, [(t, 52 * (1 + t // 3)) for t in range(0, 60)], answers=False) == []


def test_a_session_whose_address_is_gone_ends_once_the_hub_answers():
    w = watch.Watch(silent_after=4, resume_wait=30)
    acted = run(w, [(0, 0)] + [(t, 52 * t) for t in range(1, 8)], have_local=False)
    assert acted[0][:2] == (4, "end") and "no longer has the session's address 10.213.42.12" in acted[0][2]


def test_a_silent_session_gets_until_its_next_transmission_then_ends():
    w = watch.Watch(silent_after=4, resume_wait=30)
    acted = run(w, [(0, 0)] + [(t, 52 * t) for t in range(1, 12)])
    assert [(now, action) for now, action, _unused in acted][:2] == [(4, "log"), (9, "end")]  # next one in 3 s, + 2 s


def test_a_session_that_resumes_is_left_alone_and_said_so():
    w = watch.Watch(silent_after=4, resume_wait=30)
    acted = run(w, [(0, 0)] + [(t, 52 * t) for t in range(1, 7)] + [(7, 0), (8, 0)])
    assert [action for _unused, action, _unused in acted] == ["log", "log"] and acted[1][2] == "the session resumed"


def test_resume_wait_caps_the_wait():
    w = watch.Watch(silent_after=4, resume_wait=1)
    acted = run(w, [(0, 0)] + [(t, 52 * t) for t in range(1, 8)])
    assert [(now, action) for now, action, _unused in acted][:2] == [(4, "log"), (5, "end")]


def test_have_address():
    assert watch.have_address("127.0.0.1")
    assert not watch.have_address("192.0.2.77")  # TEST-NET-1: no host has it


def test_hub_answers_reads_a_banner_and_nothing_else():
    def serve(banner):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()

        def accept():
            conn, _unused = server.accept()
            if banner:
                conn.sendall(banner)
            threading.Event().wait(1.5)
            conn.close()
        threading.Thread(target=accept, daemon=True).start()
        return server.getsockname()[1]

    assert watch.hub_answers("127.0.0.1", serve(b"SSH-2.0-OpenSSH_9.2\r\n"), 1.0)
    assert not watch.hub_answers("127.0.0.1", serve(b"HTTP/1.1 400\r\n"), 1.0)
    assert not watch.hub_answers("127.0.0.1", serve(b""), 0.5)  # accepts and says nothing: a dead forward


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_session_socket_finds_the_first_established_connection_of_a_process():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    accepted, _unused = server.accept()
    try:
        row = watch.session_socket(os.getpid())
        assert row is not None and row.state == _procfs.TCP_ESTABLISHED
        assert {row.local_address, row.remote_address} == {client.getsockname(), server.getsockname()}
    finally:
        client.close()
        accepted.close()
        server.close()


def test_a_long_stall_that_ends_knocks_once_in_case_the_hubs_end_still_waits():
    """The hub acknowledged this host's data again; whether its own waits for TCP's re-send only the hub knows."""
    w = watch.Watch(silent_after=4, resume_wait=120, knock_after=10, knock_every=30)
    samples = [(0, 0)] + [(t, 52 * t) for t in range(1, 40)] + [(40, 0), (41, 0), (42, 0)]
    acted = run(w, samples, answers=False)
    assert [(now, action) for now, action, _m in acted] == [(40, "knock")]
    assert "moved again after 40 s" in acted[0][2]
    # A short stall (a keep-alive's wait) knocks nothing.
    w = watch.Watch(silent_after=4, knock_after=10)
    assert run(w, [(0, 0), (1, 52), (2, 52), (3, 0), (4, 0)]) == []


def test_a_stall_held_back_by_this_host_knocks_once_the_hub_answers():
    """The link went down at the spoke (its kernel probes a zero window): the hub may hold its data as long."""
    w = watch.Watch(silent_after=4, resume_wait=30, knock_after=10)
    acted = []
    for t in range(0, 16):
        action, message = w.step(t, sample(52 * (t + 1), timer=4, when=40.0, probes=3), lambda: True,
                                 lambda ip: True)
        acted.append((t, action, message))
    assert [(t, a) for t, a, _m in acted if a] == [(4, "log"), (10, "knock")], acted
    assert "knocking (and waiting up to" in acted[10][2]


def test_a_knock_runs_the_tunnels_own_command_with_its_own_log():
    argv = ["/usr/bin/ssh", "-F", "/etc/revtunnel/hub.ssh_config", "-E", "/run/x/ssh.log", "-f", "-NT", "revtunnel-hub"]
    short = ["-o", f"ConnectTimeout={watch.KNOCK_CONNECT}", "-o", "ConnectionAttempts=1"]
    expected = argv[:1] + short + argv[1:4] + ["/run/x/knock.log"] + argv[5:]
    assert watch.knock_command(argv, "/run/x/knock.log") == expected
    assert watch.knock_command(["/usr/bin/ssh", "-NT", "hub"], "/k") is None, "only a command that forks once forwarded"


def test_find_process_finds_another_process_running_the_same_command(tmp_path):
    import subprocess
    argv = [sys.executable, "-c", "import time; time.sleep(30)", str(tmp_path)]
    child = subprocess.Popen(argv)
    try:
        # Until the child has exec'd, its /proc cmdline is still this process's (seen under load).
        wanted = "\0".join(argv).encode() + b"\0"
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/cmdline").read_bytes() != wanted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watch.find_process(argv, {os.getpid()}) == child.pid
        assert watch.find_process(argv, {child.pid}) is None
    finally:
        child.kill()
        child.wait()


def test_a_sock_diag_dump_gives_each_sockets_family_and_id():
    sockid = struct.pack(">HH", 10000, 40000) + bytes(44)
    msg = struct.pack("=BBBB48sIIIII", 2, 6, 3, 0, sockid, 0, 0, 0, 0, 0)
    packet = struct.pack("=IHHII", 16 + len(msg), 20, 2, 1, 0) + msg
    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + bytes(4)
    assert _procfs._diag_ids(packet) == ([(2, sockid)], False)
    assert _procfs._diag_ids(packet + done) == ([(2, sockid)], True)


def test_a_knock_ends_within_its_deadline_when_every_attempt_hangs(monkeypatch, tmp_path):
    """A link that drops again during the knock: the attempts share one deadline, and the watchdog is back."""
    monkeypatch.setattr(watch, "command_line", lambda pid: ["/usr/bin/ssh", "-F", "c", "-f", "-NT", "hub"])
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    timeouts = []

    def hangs(argv, timeout, **_kw):
        timeouts.append(timeout)
        time.sleep(min(timeout, 0.3))
        raise subprocess.TimeoutExpired(argv, timeout)
    started = time.monotonic()
    assert watch.knock(1, attempts=5, pause=0.1, deadline=0.7, run=hangs) is None
    assert time.monotonic() - started < 1.5
    assert timeouts and all(t <= 0.7 for t in timeouts) and len(timeouts) < 5, timeouts
