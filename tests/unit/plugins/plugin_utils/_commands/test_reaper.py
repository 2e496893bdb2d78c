# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the reaper: it trusts only root sshd, never ends a live spoke, caps useless sessions."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _procfs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import reaper

# The daemon and the decisions live in one module now.
script = reaper

FP_A = "SHA256:WhNFE1EoUD8F0kHSCdtIUPkMWFnaeDWO4XPHDgsHKrI"
FP_B = "SHA256:9Vo86ajRB+Xv8Wpg1KukUp2Bftjr+6SmQTUztZ2Ck7g"


def entry(message, pid=109, ident="sshd", uid="0", comm=None, **extra):
    """A journal entry as journald records it for a process of uid UID named COMM (default: IDENT)."""
    return {"SYSLOG_IDENTIFIER": ident, "_PID": str(pid), "MESSAGE": message, "_UID": uid, "_COMM": comm or ident,
            **extra}


def accepted(pid, addr="172.25.0.3", port=41780, fp=FP_A, user="tunnel", start_ticks=1):
    return reaper.Session(pid=pid, user=user, fingerprint=fp, addr=addr, port=port, start_ticks=start_ticks)


def everyone_alive(_session):
    return True


@pytest.mark.parametrize("ident", ["sshd", "sshd-session"])
def test_accepted_line_of_openssh_9_and_10_is_parsed(ident):
    msg = f"Accepted publickey for tunnel from 172.25.0.3 port 41780 ssh2: ED25519 {FP_A}"
    assert reaper.parse_accepted(entry(msg, 156, ident)) == accepted(156, start_ticks=None)


def test_ipv6_address_and_other_key_types_are_parsed():
    msg = f"Accepted publickey for tunnel from 2001:db8::7 port 50022 ssh2: ECDSA {FP_B}"
    session = reaper.parse_accepted(entry(msg))
    assert (session.addr, session.port, session.fingerprint) == ("2001:db8::7", 50022, FP_B)


def test_message_as_byte_list_is_decoded():
    msg = f"Accepted publickey for tunnel from 10.0.0.1 port 1 ssh2: ED25519 {FP_A}"
    assert reaper.parse_accepted(entry(list(msg.encode()))).addr == "10.0.0.1"


@pytest.mark.parametrize("item", [
    entry("Accepted password for tunnel from 10.0.0.1 port 1 ssh2"),
    entry("pam_unix(sshd:session): session opened for user tunnel(uid=997) by (uid=0)"),
    entry(f"Accepted publickey for tunnel from 10.0.0.1 port 1 ssh2: ED25519 {FP_A}", ident="sudo"),
    {"SYSLOG_IDENTIFIER": "sshd", "_UID": "0", "_COMM": "sshd",
     "MESSAGE": f"Accepted publickey for t from a port 1 ssh2: ED25519 {FP_A}"},
    {},
])
def test_other_lines_are_ignored(item):
    assert reaper.parse_accepted(item) is None


def test_first_session_of_a_key_terminates_nothing():
    book = reaper.SessionBook("tunnel")
    assert book.accepted(accepted(100), 0.0, everyone_alive).terminate == []


def test_new_session_of_a_key_terminates_the_older_ones_of_that_key_only():
    book = reaper.SessionBook("tunnel")
    book.accepted(accepted(100, addr="10.0.0.1"), 0.0, everyone_alive)
    book.accepted(accepted(200, addr="10.0.0.9", fp=FP_B), 1.0, everyone_alive)
    decision = book.accepted(accepted(101, addr="10.0.0.2"), 2.0, everyone_alive)
    assert [s.pid for s in decision.terminate] == [100]
    assert "10.0.0.2 port 41780 (pid 101) replaces 10.0.0.1 port 41780 (pid 100)" in decision.notices[0]
    assert decision.warnings == []


def test_ended_sessions_are_not_terminated():
    book = reaper.SessionBook("tunnel")
    book.accepted(accepted(100), 0.0, everyone_alive)
    decision = book.accepted(accepted(101), 1.0, lambda s: s.pid != 100)
    assert decision.terminate == [] and decision.notices == []


def test_sessions_of_other_users_are_ignored():
    book = reaper.SessionBook("tunnel")
    book.accepted(accepted(100, user="admin"), 0.0, everyone_alive)
    assert book.accepted(accepted(101, user="admin"), 1.0, everyone_alive).terminate == []
    assert book.sessions == {}


def test_a_reused_pid_is_a_new_session():
    book = reaper.SessionBook("tunnel")
    book.accepted(accepted(100, fp=FP_A), 0.0, everyone_alive)
    book.accepted(accepted(100, fp=FP_B), 1.0, everyone_alive)
    assert book.accepted(accepted(101, fp=FP_A), 2.0, everyone_alive).terminate == []


def test_a_spoke_that_changes_address_now_and_then_is_always_replaced():
    book = reaper.SessionBook("tunnel", window=300, max_replacements=3)
    for i in range(10):
        decision = book.accepted(accepted(100 + i, addr=f"10.0.0.{i}"), i * 400.0, everyone_alive)
        assert decision.warnings == []
        assert [s.pid for s in decision.terminate] == ([99 + i] if i else [])


def test_two_machines_swapping_one_key_stop_after_one_swap_back_and_are_named():
    book = reaper.SessionBook("tunnel", window=300, max_replacements=3, hold=600)
    book.accepted(accepted(100, addr="10.0.0.1"), 0.0, everyone_alive)
    assert [s.pid for s in book.accepted(accepted(101, addr="10.0.0.2"), 2.0, everyone_alive).terminate] == [100]
    alive = {101}

    def still_alive(session):
        return session.pid in alive

    alive.add(102)
    decision = book.accepted(accepted(102, addr="10.0.0.1", port=5555), 4.0, still_alive)
    assert decision.terminate == []
    warning = decision.warnings[0]
    assert "10.0.0.2 port 41780" in warning and "10.0.0.1 port 5555" in warning and FP_A in warning
    assert "share one spoke key" in warning
    # Held: later attempts terminate nothing and do not repeat the warning at every retry.
    alive.add(103)
    later = book.accepted(accepted(103, addr="10.0.0.1"), 10.0, still_alive)
    assert later.terminate == [] and later.warnings == []
    assert book.accepted(accepted(104, addr="10.0.0.1"), 70.0, still_alive).warnings != []
    # The refused sessions end when their forward fails; the holder's session lives on.
    alive.intersection_update({101})
    # After the hold, the newest session wins again.
    assert [s.pid for s in book.accepted(accepted(105, addr="10.0.0.1"), 700.0, still_alive).terminate] == [101]


def test_two_machines_behind_one_nat_are_caught_by_the_replacement_count():
    book = reaper.SessionBook("tunnel", window=300, max_replacements=3, hold=600)
    results = [book.accepted(accepted(100 + i, port=40000 + i), float(i), everyone_alive) for i in range(6)]
    assert [len(r.terminate) > 0 for r in results] == [False, True, True, True, False, False]
    assert "replaced 3 times in 300 s" in results[4].warnings[0]


def test_prune_forgets_ended_sessions():
    book = reaper.SessionBook("tunnel")
    book.accepted(accepted(100), 0.0, everyone_alive)
    book.accepted(accepted(200, fp=FP_B), 0.0, everyone_alive)
    book.prune(lambda s: s.pid == 200)
    assert list(book.sessions) == [FP_B]


def test_proc_helpers_read_start_time_and_monitor_title(tmp_path):
    (tmp_path / "42").mkdir()
    fields = ["S"] + [str(n) for n in range(4, 60)]
    (tmp_path / "42" / "stat").write_text("42 (sshd: tunnel) [priv]) " + " ".join(fields))
    (tmp_path / "42" / "cmdline").write_bytes(b"sshd-session: tunnel [priv]\0")
    (tmp_path / "42" / "status").write_text("Name:\tsshd-session\nUid:\t0\t0\t0\t0\n")
    proc = _procfs.Proc(tmp_path)
    assert proc.start_ticks(42) == 22
    assert proc.is_tunnel_monitor(42, "tunnel")
    assert not proc.is_tunnel_monitor(42, "admin")
    assert proc.start_ticks(43) is None
    assert not proc.is_tunnel_monitor(43, "tunnel")


def test_own_process_start_time_is_readable():
    assert _procfs.Proc().start_ticks(os.getpid()) is not None


def test_the_hubs_zipapp_runs_the_reaper_and_documents_it(hub_zipapp):
    # -I: no PYTHONPATH, no user site, no current directory: the archive alone holds what the reaper imports
    out = subprocess.run([sys.executable, "-I", hub_zipapp, "reaper", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--max-replacements" in out and "--idle-grace" in out


def test_journal_time_is_kept_and_a_pid_reused_since_is_not_that_session():
    msg = f"Accepted publickey for tunnel from 10.0.0.1 port 1 ssh2: ED25519 {FP_A}"
    session = reaper.parse_accepted({**entry(msg), "__REALTIME_TIMESTAMP": "1700000000500000"})
    assert session.logged_at == 1700000000.5
    assert reaper.is_that_session(session, 1700000000.1)
    assert reaper.is_that_session(session, 1700000000.5 - 100)
    # Started after the line was logged, or long before: another process got that pid.
    assert not reaper.is_that_session(session, 1700000030.0)
    assert not reaper.is_that_session(session, 1700000000.5 - 3600)
    # Without the journal's own time nothing fits: such a line is not trusted.
    assert not reaper.is_that_session(reaper.parse_accepted(entry(msg)), 1.0)


def test_start_time_is_boot_time_plus_ticks(tmp_path):
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n")
    assert _procfs.Proc(tmp_path, hertz=100).started_at(250) == 1700000002.5
    assert _procfs.Proc(tmp_path).started_at(None) is None
    assert _procfs.Proc(tmp_path / "missing").started_at(1) is None


def test_own_process_started_in_the_past():
    proc = _procfs.Proc(hertz=os.sysconf("SC_CLK_TCK"))
    assert proc.started_at(proc.start_ticks(os.getpid())) <= time.time()


# --- What the reaper trusts: forged lines, dead pids, impostor processes, unknown keys -------------------------

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILMTMmVG8+fvbtOiAQaJ0qjjzxSJo2GIiAPCeToPit23"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICw6b9XvsgDWUrydnuB/2ecO0rYmgyp2aHkg/y1SEw7f"
BTIME = 1700000000
HZ = 100


class FakeProc:
    """A /proc tree on disk: processes with a title, uids, start time, parent and sockets."""

    def __init__(self, root):
        self.root = root
        (root / "net").mkdir(parents=True)
        (root / "stat").write_text(f"cpu 1 2 3\nbtime {BTIME}\n")
        self.listening = []

    def add(self, pid, title, uid=0, started=BTIME + 50.0, ppid=1, sockets=(), comm=None):
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True, exist_ok=True)
        ticks = int((started - BTIME) * HZ)
        # The kernel's command name is the program's (sshd, sshd-session, python3), whatever title it sets.
        comm = comm or title.split(":")[0].split()[0]
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} " + " ".join(["0"] * 17) + f" {ticks} 0 0")
        (d / "cmdline").write_bytes(title.encode() + b"\0")
        (d / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
        for n, inode in enumerate(sockets):
            os.symlink(f"socket:[{inode}]", d / "fd" / str(n))
        return pid

    def listen(self, inode, port=10000):
        self.listening.append(
            f"   0: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000   997        0 {inode}")
        (self.root / "net" / "tcp").write_text("  sl  local_address ...\n" + "\n".join(self.listening) + "\n")

    def proc(self):
        return _procfs.Proc(self.root, hertz=HZ)


def line(pid, fp, addr="10.0.0.1", at=BTIME + 50.5, **fields):
    msg = f"Accepted publickey for tunnel from {addr} port 40000 ssh2: ED25519 {fp}"
    return entry(msg, pid, __REALTIME_TIMESTAMP=str(int(at * 1e6)), **fields)


@pytest.fixture
def fake(tmp_path):
    return FakeProc(tmp_path / "proc")


@pytest.fixture
def keys():
    spokes = {"lab-pc-1": {"ports": {"ssh": 10000}, "keys": [KEY_A]}}
    return reaper.trusted_keys(spokes, document.fingerprints(spokes))


FP_KEY_A = document.key_fingerprint(KEY_A)
FP_KEY_B = document.key_fingerprint(KEY_B)


@pytest.mark.parametrize("fields", [
    {"uid": "1000"},                                  # logger -t sshd by a hub account
    {"uid": "1000", "ident": "sshd-session"},         # logger -t sshd-session
    {"uid": "0", "comm": "logger"},                   # root's logger is not sshd either
    {"uid": "1000", "comm": "sshd"},                  # a renamed process of another account
    {"uid": "0", "_EXE": "/tmp/sshd-evil/python3"},   # root sshd comm but another program
])
def test_forged_lines_are_ignored(fields):
    msg = f"Accepted publickey for tunnel from 10.9.9.9 port 1 ssh2: ED25519 {FP_A}"
    assert reaper.parse_accepted(entry(msg, **fields)) is None


def test_journal_match_asks_journald_for_root_sshd_only():
    assert reaper.JOURNAL_MATCHES == ("_UID=0", "_COMM=sshd", "+", "_UID=0", "_COMM=sshd-session")
    msg = f"Accepted publickey for tunnel from 10.9.9.9 port 1 ssh2: ED25519 {FP_A}"
    assert reaper.parse_accepted(entry(msg, _EXE="/usr/lib/openssh/sshd-session", ident="sshd-session"))


def test_a_session_whose_pid_is_gone_is_ignored_unless_its_line_is_fresh(fake, keys):
    session = reaper.parse_accepted(line(500, FP_KEY_A, at=BTIME + 50.0))
    assert reaper.checked(session, fake.proc(), keys) is None
    assert reaper.checked(session, fake.proc(), keys, now=BTIME + 70.0) is None
    # A refused spoke exits before journald delivers its line: decided on (probe first), never booked.
    gone = reaper.checked(session, fake.proc(), keys, now=BTIME + 51.0)
    assert gone.start_ticks is None and gone.spoke == "lab-pc-1"
    book = reaper.SessionBook("tunnel")
    book.record(gone)
    assert book.sessions == {}


def test_a_non_root_process_with_the_monitor_title_is_ignored(fake, keys):
    fake.add(500, "sshd: tunnel [priv]", uid=1000)
    assert reaper.checked(reaper.parse_accepted(line(500, FP_KEY_A)), fake.proc(), keys) is None


def test_a_monitor_started_after_the_line_is_another_process(fake, keys):
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 80.0)
    assert reaper.checked(reaper.parse_accepted(line(500, FP_KEY_A)), fake.proc(), keys) is None


def test_a_key_the_registry_does_not_trust_is_ignored(fake, keys):
    fake.add(500, "sshd: tunnel [priv]")
    assert reaper.checked(reaper.parse_accepted(line(500, FP_KEY_B)), fake.proc(), keys) is None
    fake.add(501, "sshd-session: tunnel [priv]")
    trusted = reaper.checked(reaper.parse_accepted(line(501, FP_KEY_A)), fake.proc(), keys)
    assert trusted.spoke == "lab-pc-1" and trusted.start_ticks == 5000


def test_without_keys_in_the_registry_the_authorized_keys_file_is_trusted():
    spokes = {"lab-pc-1": {"ports": {"ssh": 10000}, "keys": []}}
    text = ("# managed\n"
            f'restrict,port-forwarding,permitlisten="localhost:10000",permitopen="127.0.0.1:1" {KEY_A} lab-pc-1\n'
            f'restrict,port-forwarding,permitlisten="localhost:10007",permitopen="127.0.0.1:1" {KEY_B} gone-pc\n')
    found = reaper.trusted_keys(spokes, {}, text)
    assert found[FP_KEY_A] == reaper.Spoke("lab-pc-1", {"ssh": 10000})
    assert found[FP_KEY_B] == reaper.Spoke("gone-pc", {"port0": 10007})


# --- The script: replay, kill errors, liveness, the cap ---------------------------------------------------------


@pytest.fixture
def run(tmp_path, fake, monkeypatch):
    """The script's Reaper on the fake /proc, a v2 registry, and os.kill recorded instead of sent."""
    registry = tmp_path / "ports.json"
    registry.write_text(json.dumps({"version": 2, "spokes": {
        "lab-pc-1": {"ports": {"ssh": 10000}, "keys": [KEY_A]}}}))
    args = script.parse_args(["--user", "tunnel", "--registry", str(registry),
                              "--authorized-keys", str(tmp_path / "none")])
    killed, logged = [], []
    monkeypatch.setattr(script.os, "kill", lambda pid, sig: killed.append(pid))
    monkeypatch.setattr(script, "log", lambda prio, text: logged.append((prio, text)))
    monkeypatch.setattr(script.time, "time", lambda: BTIME + 100.0)
    r = script.Reaper(args, proc=fake.proc())
    r.killed, r.logged = killed, logged
    return r


def test_replayed_lines_rebuild_the_book_and_kill_nothing(run, fake):
    run.started = BTIME + 100.0
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    fake.add(501, "sshd: tunnel [priv]", started=BTIME + 50.0)
    run.entry(line(500, FP_KEY_A, at=BTIME + 10.2))
    run.entry(line(501, FP_KEY_A, at=BTIME + 50.2))
    assert run.killed == [] and [s.pid for s in run.book.sessions[FP_KEY_A]] == [500, 501]


def test_forged_line_of_a_live_key_kills_nothing(run, fake):
    run.started = BTIME
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, at=BTIME + 10.2))
    fake.add(600, "sshd: tunnel [priv]", uid=1000, started=BTIME + 50.0)
    run.entry(line(600, FP_KEY_A, uid="1000", comm="logger"))
    run.entry(line(600, FP_KEY_A))
    assert run.killed == [] and [s.pid for s in run.book.sessions[FP_KEY_A]] == [500]


@pytest.mark.parametrize("error", [ProcessLookupError, PermissionError])
def test_kill_errors_are_logged_not_raised(run, monkeypatch, error):
    def refuse(pid, sig):
        raise error(1, "refused")
    monkeypatch.setattr(script.os, "kill", refuse)
    run.terminate(123, "test")
    assert "pid 123" in run.logged[-1][1]


def test_a_surprise_in_one_entry_does_not_stop_the_reaper(run):
    def boom(_entry):
        raise RuntimeError("bad entry")
    run.guarded(boom, {})
    assert run.logged[-1][0] == 3 and "bad entry" in run.logged[-1][1]


def test_a_live_older_session_is_kept_with_one_warning(run, fake, monkeypatch):
    run.started = BTIME
    probed = []
    monkeypatch.setattr(script, "session_answers", lambda port, timeout: probed.append(port) or True)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, addr="10.0.0.1", at=BTIME + 10.2))
    for pid in (501, 502, 503):
        fake.add(pid, "sshd: tunnel [priv]", started=BTIME + 50.0)
        run.entry(line(pid, FP_KEY_A, addr="203.0.113.9"))
    warnings = [text for prio, text in run.logged if prio == 4]
    assert run.killed == [] and len(warnings) == 1
    assert "spoke lab-pc-1" in warnings[0] and "203.0.113.9" in warnings[0]
    assert probed == [10000], "a live answer is cached: a key retried in a loop does not flood the spoke"


def test_a_dead_older_session_is_ended(run, fake, monkeypatch):
    run.started = BTIME
    probed = []
    monkeypatch.setattr(script, "session_answers", lambda port, timeout: probed.append((port, timeout)) and False)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, at=BTIME + 10.2))
    fake.add(501, "sshd: tunnel [priv]", started=BTIME + 50.0)
    run.entry(line(501, FP_KEY_A, addr="10.0.0.2"))
    assert run.killed == [500] and probed == [(10000, 2.0)]


def test_a_reconnecting_spoke_whose_session_is_already_gone_frees_its_port_from_a_dead_session(run, fake,
                                                                                               monkeypatch):
    run.started = BTIME
    monkeypatch.setattr(script, "session_answers", lambda port, timeout: False)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, at=BTIME + 10.2))
    run.entry(line(501, FP_KEY_A, addr="10.0.0.2", at=BTIME + 99.0))
    assert run.killed == [500] and not run.book.sessions.get(FP_KEY_A)


def test_a_gone_session_never_ends_a_spoke_that_answers(run, fake, monkeypatch):
    run.started = BTIME
    monkeypatch.setattr(script, "session_answers", lambda port, timeout: True)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, at=BTIME + 10.2))
    run.entry(line(501, FP_KEY_A, addr="10.0.0.2", at=BTIME + 99.0))
    assert run.killed == [] and [s.pid for s in run.book.sessions[FP_KEY_A]] == [500]


def test_the_cap_ends_listener_less_sessions_only(run, fake):
    fake.listen(7001)
    holder = fake.add(500, "sshd: tunnel [priv]", started=BTIME + 1.0)
    fake.add(510, "sshd: tunnel", uid=997, ppid=holder, sockets=[7001, 7002])
    idle = fake.add(501, "sshd: tunnel [priv]", started=BTIME + 10.0)
    fake.add(511, "sshd: tunnel", uid=997, ppid=idle, sockets=[7003])
    young = fake.add(502, "sshd: tunnel [priv]", started=BTIME + 95.0)
    fake.add(503, "sshd: admin [priv]", started=BTIME + 10.0)
    fake.add(504, "sshd: tunnel [priv]", uid=1000, started=BTIME + 10.0)
    run.cap()
    assert run.killed == [idle] and young not in run.killed
    assert "has held no forwarded port for 20 s" in run.logged[-1][1]


def test_the_cap_stops_when_the_fds_cannot_be_read(run, fake, monkeypatch):
    fake.add(501, "sshd: tunnel [priv]", started=BTIME + 10.0)

    def denied(_pid):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(run.proc, "socket_inodes", denied)
    run.cap()
    run.cap()
    assert run.killed == [] and len(run.logged) == 1 and "CAP_SYS_PTRACE" in run.logged[0][1]


def test_useless_sessions_need_a_known_state_and_the_grace():
    monitors = [(1, 0.0, False), (2, 0.0, True), (3, 0.0, None), (4, 95.0, False), (5, None, False)]
    assert reaper.useless_sessions(monitors, 100.0, 20.0) == [1]


class Server:
    """A loopback listener that greets, closes at once, or stays silent (a dead session's listener)."""

    def __init__(self, behaviour):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.behaviour, self.conns = behaviour, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _peer = self.sock.accept()
            except OSError:
                return
            if self.behaviour == "greet":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
            if self.behaviour in ("greet", "close"):
                conn.close()
            else:
                self.conns.append(conn)


@pytest.mark.parametrize("behaviour, answers", [("greet", True), ("close", True), ("silent", False)])
def test_a_session_answers_with_a_banner_or_a_close_never_with_silence(behaviour, answers):
    server = Server(behaviour)
    start = time.monotonic()
    assert script.session_answers(server.port, 0.2) is answers
    assert time.monotonic() - start < 1.0
    server.sock.close()


def test_a_port_nobody_listens_on_has_no_live_session():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert script.session_answers(port, 0.2) is False


# --- Busy cuts, newcomers without ports, squatters ---------------------------------------------------------------

def tcp_line(local, remote, state="01", unacked=0, timer=0, when=0, retransmits=0, uid=0, inode=5000):
    """One /proc/net/tcp line: local and remote as (hex ip, port)."""
    return (f"   0: {local[0]}:{local[1]:04X} {remote[0]}:{remote[1]:04X} {state} {unacked:08X}:00000000 "
            f"{timer:02X}:{int(when * 100):08X} {retransmits:08X} {uid:5d}        0 {inode} 1 0 20 4 30 10 -1")


def write_tcp(fake, *lines):
    (fake.root / "net" / "tcp").write_text("  sl  local_address ...\n" + "\n".join(fake.listening + list(lines)) + "\n")


def fds_denied(_pid):
    """socket_inodes without CAP_SYS_PTRACE."""
    raise PermissionError(13, "Permission denied")


HUB_22 = ("0A2AD50A", 22)        # 10.213.42.10:22
SPOKE_OLD = ("0C2AD50A", 40000)  # 10.213.42.12:40000, the older session's client end


def test_a_session_waiting_for_a_retransmission_is_replaced_without_a_probe(run, fake, monkeypatch):
    run.started = BTIME
    probed = []
    monkeypatch.setattr(script, "session_answers", lambda port, timeout: probed.append(port) or True)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, addr="10.213.42.12", at=BTIME + 10.2))
    # sshd's end of that session: 0x1d0 bytes unacknowledged, 8 re-sends, the next one 42 s away (a busy cut).
    write_tcp(fake, tcp_line(HUB_22, SPOKE_OLD, unacked=0x1D0, timer=1, when=42.0, retransmits=8))
    fake.add(501, "sshd: tunnel [priv]", started=BTIME + 50.0)
    run.entry(line(501, FP_KEY_A, addr="10.213.42.12"))
    assert run.killed == [500] and probed == [], "a stuck session cannot answer a probe: not even tried"
    assert any("waits 42 s for its next re-send (8 unanswered)" in text for _prio, text in run.logged)


@pytest.mark.parametrize(("state", "addr"), [
    ({"unacked": 0, "timer": 2, "when": 7000.0}, "10.213.42.12"),                      # idle: keep-alive only
    ({"unacked": 0x1D0, "timer": 1, "when": 0.4, "retransmits": 1}, "10.213.42.99"),   # in flight, another address
    ({"unacked": 0x1D0, "timer": 1, "when": 3.0, "retransmits": 6}, "10.213.42.99"),   # soon, another address
])
def test_a_healthy_older_session_is_probed_as_before(run, fake, monkeypatch, state, addr):
    run.started = BTIME
    probed = []
    monkeypatch.setattr(script, "session_answers", lambda port, timeout: probed.append(port) or True)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, addr="10.213.42.12", at=BTIME + 10.2))
    write_tcp(fake, tcp_line(HUB_22, SPOKE_OLD, **state))
    fake.add(501, "sshd: tunnel [priv]", started=BTIME + 50.0)
    run.entry(line(501, FP_KEY_A, addr=addr))
    assert probed == [10000] and 500 not in run.killed


def test_the_spokes_own_knock_waits_for_a_session_that_re_sends_soon(run, fake, monkeypatch):
    """A shorter busy cut: the hub re-sends within 5 s, so the old session and its connections carry on."""
    run.started = BTIME
    probed = []
    monkeypatch.setattr(script, "session_answers", lambda port, timeout: probed.append(port) or False)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, addr="10.213.42.12", at=BTIME + 10.2))
    fake.listen(7001)  # the old session's listener, there long before the knock
    run.first_seen[(10000, "7001")] = BTIME + 10.5
    write_tcp(fake, tcp_line(HUB_22, SPOKE_OLD, unacked=0x1D0, timer=1, when=3.0, retransmits=6))
    fake.add(501, "sshd: tunnel [priv]", started=BTIME + 50.0)
    run.entry(line(501, FP_KEY_A, addr="10.213.42.12"))
    assert probed == [] and 500 not in run.killed and 501 in run.killed, "the old one carries on, the knock goes"
    assert any("re-sends within 5 s and carries on" in text for _prio, text in run.logged)


def test_waiting_for_retransmission_needs_unacked_data_backoff_and_a_late_resend():
    sock = _procfs.TcpSocket(port=22, state="01", uid=0, inode="1", unacked=464, timer=1, when=42.0, retransmits=8)
    assert _procfs.waiting_for_retransmission(sock, 2.0)
    for change in ({"unacked": 0}, {"timer": 4}, {"retransmits": 1}, {"when": 1.5}):
        assert not _procfs.waiting_for_retransmission(replace(sock, **change), 2.0), change
    assert not _procfs.waiting_for_retransmission(replace(sock, when=4.0), reaper.RESUME_SOON)
    assert not _procfs.waiting_for_retransmission(None, 2.0)


def test_a_newcomer_of_a_key_whose_live_session_holds_the_port_is_ended_at_once(run, fake, monkeypatch):
    """21.2: no 20 s grace for a leaked key's extra logins, and no ptrace needed to tell."""
    run.started = BTIME
    monkeypatch.setattr(script, "session_answers", lambda port, timeout: True)
    monkeypatch.setattr(run.proc, "socket_inodes", fds_denied)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    run.entry(line(500, FP_KEY_A, addr="10.0.0.1", at=BTIME + 10.2))
    fake.listen(7001)  # the tunnel's listener, seen long before the thief's login
    run.first_seen[(10000, "7001")] = BTIME + 10.5
    for pid in (501, 502, 503):
        fake.add(pid, "sshd: tunnel [priv]", started=BTIME + 99.0)
        run.entry(line(pid, FP_KEY_A, addr="203.0.113.9", at=BTIME + 99.5))
    assert run.killed == [501, 502, 503]
    assert sum("holds none" in text for _prio, text in run.logged) == 3
    # The thieves never count as sessions "from the live session's address" for the next decision.
    assert not any("logged in again from 203.0.113.9" in text for _prio, text in run.logged)


def test_holds_none_of_needs_every_port_held_since_before_the_login():
    assert reaper.holds_none_of(100.0, [10000, 10001], {10000: 50.0, 10001: 60.0})
    assert not reaper.holds_none_of(100.0, [10000, 10001], {10000: 50.0})          # one port is free
    assert not reaper.holds_none_of(100.0, [10000], {10000: 100.5})                # its own listener, perhaps
    assert not reaper.holds_none_of(None, [10000], {10000: 50.0})
    assert not reaper.holds_none_of(100.0, [], {})


def test_the_cap_ends_a_portless_newcomer_without_reading_fds(run, fake, monkeypatch):
    monkeypatch.setattr(run.proc, "socket_inodes", fds_denied)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 10.0)
    fake.add(501, "sshd: tunnel [priv]", started=BTIME + 90.0)
    run.book.record(replace(accepted(500, addr="10.0.0.1", fp=FP_KEY_A), start_ticks=1000, logged_at=BTIME + 10.2,
                            spoke="lab-pc-1"))
    run.book.record(replace(accepted(501, addr="10.0.0.9", fp=FP_KEY_A), start_ticks=9000, logged_at=BTIME + 90.2,
                            spoke="lab-pc-1"))
    fake.listen(7001)
    run.first_seen[(10000, "7001")] = BTIME + 10.5
    run.cap()
    assert run.killed == [501] and "held by an older session" in run.logged[-1][1]


def test_a_squatter_is_named_and_its_process_ended(run, fake, monkeypatch):
    monkeypatch.setattr(script._procfs, "account", lambda uid: {1000: "mallory", 0: "root"}.get(uid, f"uid {uid}"))
    run.tunnel_uid = 997
    fake.add(700, "python3 squat.py", uid=1000, sockets=[8001])
    fake.add(701, "python3 other.py", uid=1000, sockets=[8009])
    lines = [tcp_line(("0100007F", 10000), ("00000000", 0), state="0A", uid=1000, inode=8001)]
    write_tcp(fake, *lines)
    spokes = {"lab-pc-1": {"ports": {"ssh": 10000}}}
    run.guard_round(run.sockets(), spokes)
    run.guard_round(run.sockets(), spokes)
    named = [text for _prio, text in run.logged if "squatted" in text]
    assert len(named) == 1 and "account mallory (uid 1000) listens on it" in named[0] and "lab-pc-1/ssh" in named[0]
    assert run.killed == [700, 700], "only the holder's process, each round it is seen"


def test_root_holding_a_port_is_named_never_signalled(run, fake, monkeypatch):
    run.tunnel_uid = 997
    fake.add(700, "python3 holder.py", uid=0, sockets=[8001])
    write_tcp(fake, tcp_line(("0100007F", 10000), ("00000000", 0), state="0A", uid=0, inode=8001))
    run.guard_round(run.sockets(), {"lab-pc-1": {"ports": {"ssh": 10000}}})
    assert run.killed == [] and any("(uid 0) listens on it" in text for _prio, text in run.logged)


def test_the_filters_refusals_are_reported_with_the_account_once_a_minute(run, monkeypatch):
    monkeypatch.setattr(script._procfs, "account", lambda uid: "mallory")

    class Guard:
        counts = {(1000, 10000): 168, (0, 10500): 1}

        def refused(self):
            return dict(self.counts)
    run.guard, run.self_test_key = Guard(), (0, 10500)
    spokes = {"lab-pc-1": {"ports": {"ssh": 10000}}}
    run.guard_round([], spokes)
    Guard.counts[(1000, 10000)] = 500
    run.guard_round([], spokes)
    reported = [text for _prio, text in run.logged if text.startswith("refused")]
    assert reported == ["refused binds by account mallory (uid 1000): port 10000 (spoke lab-pc-1/ssh) x168; only "
                        "tunnel may bind the spokes' ports"], "the self-test is not reported; repeats wait 60 s"


def test_ports_option():
    assert reaper.parse_ports("10000-10999") == (10000, 10999) and reaper.parse_ports("") is None
    for bad in ("10999-10000", "0-10", "10000", "a-b"):
        with pytest.raises(ValueError):
            reaper.parse_ports(bad)


def test_a_gone_squatters_time_wait_is_ended(run, fake, monkeypatch):
    ended = []
    monkeypatch.setattr(script._procfs, "destroy_time_wait", lambda port: ended.append(port) or 2)
    run.tunnel_uid = 997
    # TIME_WAIT on the spoke's port, nothing listening: the tunnel cannot bind it. Another port is listened on.
    write_tcp(fake, tcp_line(("0100007F", 10000), ("0100007F", 40000), state="06", uid=0, inode=0),
              tcp_line(("0100007F", 10001), ("0100007F", 40001), state="06", uid=0, inode=0),
              tcp_line(("0100007F", 10001), ("00000000", 0), state="0A", uid=997, inode=8002))
    spokes = {"lab-pc-1": {"ports": {"ssh": 10000}}, "lab-pc-2": {"ports": {"ssh": 10001}}}
    run.guard_round(run.sockets(), spokes)
    assert ended == [], "a tunnel's own TIME_WAIT sockets block nothing: left alone"
    run.squatted_ports = {10000: time.monotonic(), 10001: time.monotonic()}  # a squatter held both lately
    run.guard_round(run.sockets(), spokes)
    assert ended == [10000] and "ended 2 TIME_WAIT socket(s) on port 10000 (spoke lab-pc-1/ssh)" in run.logged[-1][1]


def test_the_registry_is_parsed_again_only_when_it_changed(run, tmp_path, monkeypatch):
    parsed = []
    real = script.document.read_spokes
    monkeypatch.setattr(script.document, "read_spokes", lambda path: parsed.append(path) or real(path))
    first = run.keys()
    for _unused in range(50):
        assert run.keys() == first
    assert len(parsed) == 1, "a storm of logins must not parse the registry once per login"
    registry = tmp_path / "ports.json"
    replaced = tmp_path / "ports.json.new"
    replaced.write_text(json.dumps({"version": 2, "spokes": {
        "lab-pc-1": {"ports": {"ssh": 10000}, "keys": [KEY_A]},
        "lab-pc-2": {"ports": {"ssh": 10001}, "keys": [KEY_B]}}}))
    replaced.replace(registry)
    again = run.keys()
    assert len(parsed) == 2 and again[FP_KEY_B] == script.Spoke("lab-pc-2", {"ssh": 10001})
    registry.unlink()
    assert run.keys() == {} and len(parsed) == 3


@pytest.mark.parametrize("local, warned", [("10500\t20000\n", True), ("32768\t60999\n", False), (None, False)])
def test_the_reaper_warns_when_the_spokes_ports_overlap_the_kernels_ephemeral_ports(run, fake, local, warned):
    # The bind filter sees no connect() or bind() to port 0: a port the kernel picks for those is out of its reach.
    if local is not None:
        (fake.root / "sys" / "net" / "ipv4").mkdir(parents=True)
        (fake.root / "sys" / "net" / "ipv4" / "ip_local_port_range").write_text(local)
    run.port_range = (10000, 10999)
    run.warn_ephemeral()
    lines = [text for prio, text in run.logged if prio == 4 and "ip_local_port_range" in text]
    assert bool(lines) == warned, run.logged
    if warned:
        assert "10500-20000" in lines[0] and "10000-10999" in lines[0]


# --- One look a second at 1,000 tunnels: what is remembered between looks, and what is read again ----------------


def counted_fds(run, monkeypatch):
    """The pids whose fds the reaper reads, in order."""
    reads, real = [], run.proc.socket_inodes
    monkeypatch.setattr(run.proc, "socket_inodes", lambda pid: reads.append(pid) or real(pid))
    return reads


def test_a_session_holding_a_listener_is_not_read_again_until_that_listener_goes(run, fake, monkeypatch):
    reads = counted_fds(run, monkeypatch)
    fake.listen(7001)
    holder = fake.add(500, "sshd: tunnel [priv]", started=BTIME + 1.0)
    fake.add(510, "sshd: tunnel", uid=997, ppid=holder, sockets=[7001])
    for _round in range(3):
        run.cap()
    assert reads == [500, 510] and run.killed == []
    # The session lets its listener go: the next look reads its fds again and finds none.
    fake.listening.clear()
    write_tcp(fake)
    run.cap()
    assert reads == [500, 510, 500, 510] and run.killed == [holder]


def test_a_listener_that_moved_to_another_session_is_read_again(run, fake, monkeypatch):
    reads = counted_fds(run, monkeypatch)
    fake.listen(7001)
    first = fake.add(500, "sshd: tunnel [priv]", started=BTIME + 1.0)
    fake.add(510, "sshd: tunnel", uid=997, ppid=first, sockets=[7001])
    run.cap()
    # Its listener is gone and a new one listens, bound by another session: the first holds nothing now.
    os.remove(fake.root / "510" / "fd" / "0")
    fake.listening.clear()
    fake.listen(7002)
    second = fake.add(501, "sshd: tunnel [priv]", started=BTIME + 2.0)
    fake.add(511, "sshd: tunnel", uid=997, ppid=second, sockets=[7002])
    run.cap()
    assert reads == [500, 510, 500, 510, 501, 511] and run.killed == [first]


def test_a_pid_reused_with_new_start_ticks_is_not_taken_for_the_old_session(run, fake, monkeypatch):
    reads = counted_fds(run, monkeypatch)
    fake.listen(7001)
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 1.0)
    fake.add(510, "sshd: tunnel", uid=997, ppid=500, sockets=[7001])
    run.book.record(replace(accepted(500, fp=FP_KEY_B), start_ticks=100, logged_at=BTIME + 1.2))
    run.cap()
    assert run.killed == [] and reads == [500, 510]
    # That session ends; a new monitor gets pid 500 and holds nothing, while its old listener is now another's.
    shutil.rmtree(fake.root / "510")
    fake.add(500, "sshd: tunnel [priv]", started=BTIME + 30.0)
    fake.add(520, "sshd: tunnel", uid=997, ppid=fake.add(502, "sshd: tunnel [priv]", started=BTIME + 25.0),
             sockets=[7001])
    run.cap()
    assert reads[2:] == [500, 502, 520], "pid 500's fds are read again: it is another process"
    assert run.killed == [500]
    assert "unknown key" in run.logged[-1][1], "the new process is not taken for the booked session"
    assert FP_KEY_B not in run.book.sessions, "the booked session of the old process is forgotten"


def test_the_registry_is_parsed_once_per_change_and_seen_at_the_next_round(run, fake, tmp_path, monkeypatch):
    parsed = []
    real = script.document.read_spokes
    monkeypatch.setattr(script.document, "read_spokes", lambda path: parsed.append(path) or real(path))
    monkeypatch.setattr(run.proc, "socket_inodes", fds_denied)
    run.tunnel_uid = 997
    # A session of key B logged in after port 10001 had its listener: once B's port is known, it holds none.
    fake.add(501, "sshd: tunnel [priv]", started=BTIME + 90.0)
    run.book.record(replace(accepted(501, addr="10.0.0.9", fp=FP_KEY_B), start_ticks=9000, logged_at=BTIME + 90.2,
                            spoke="lab-pc-2"))
    fake.listen(7001, port=10001)
    run.first_seen[(10001, "7001")] = BTIME + 10.5
    for _round in range(5):
        run.round()
    assert len(parsed) == 1 and run.killed == []
    replaced = tmp_path / "ports.json.new"
    replaced.write_text(json.dumps({"version": 2, "spokes": {
        "lab-pc-1": {"ports": {"ssh": 10000}, "keys": [KEY_A]},
        "lab-pc-2": {"ports": {"ssh": 10001}, "keys": [KEY_B]}}}))
    replaced.replace(tmp_path / "ports.json")
    run.round()
    assert len(parsed) == 2 and run.killed == [501] and "held by an older session" in run.logged[-1][1]


def test_an_unreadable_registry_is_read_again_at_the_next_round(run, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(run, "cap", lambda sockets, spokes: seen.append(sorted(spokes)))
    monkeypatch.setattr(run, "guard_round", lambda sockets, spokes: None)
    registry = tmp_path / "ports.json"
    text = registry.read_text()
    registry.write_text("{not json")
    run.round()
    registry.write_text(text)
    run.round()
    assert seen == [[], ["lab-pc-1"]]


def test_the_book_by_pid_answers_what_find_answers():
    book = reaper.SessionBook("tunnel")
    book.accepted(accepted(100, fp=FP_A), 0.0, everyone_alive)
    book.accepted(accepted(200, fp=FP_B), 0.0, everyone_alive)
    book.portless.add(300)
    book.record(accepted(300, fp=FP_A, start_ticks=7))
    index = book.by_pid()
    assert sorted(index) == [100, 200, 300]
    assert all(index[pid] is book.find(pid) for pid in index) and index[300].start_ticks == 7
    assert book.find(400) is None and 400 not in index
