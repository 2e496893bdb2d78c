# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the reaper's decisions: the newest session of a key wins, shared keys do not flap."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[4] / "roles" / "hub" / "files"
_spec = importlib.util.spec_from_file_location("revtunnel_reaper", FILES / "revtunnel_reaper.py")
reaper = importlib.util.module_from_spec(_spec)
sys.modules["revtunnel_reaper"] = reaper
_spec.loader.exec_module(reaper)

FP_A = "SHA256:WhNFE1EoUD8F0kHSCdtIUPkMWFnaeDWO4XPHDgsHKrI"
FP_B = "SHA256:9Vo86ajRB+Xv8Wpg1KukUp2Bftjr+6SmQTUztZ2Ck7g"


def entry(message, pid=109, ident="sshd"):
    return {"SYSLOG_IDENTIFIER": ident, "_PID": str(pid), "MESSAGE": message}


def accepted(pid, addr="172.25.0.3", port=41780, fp=FP_A, user="tunnel"):
    return reaper.Session(pid=pid, user=user, fingerprint=fp, addr=addr, port=port)


def everyone_alive(_session):
    return True


@pytest.mark.parametrize("ident", ["sshd", "sshd-session"])
def test_accepted_line_of_openssh_9_and_10_is_parsed(ident):
    msg = f"Accepted publickey for tunnel from 172.25.0.3 port 41780 ssh2: ED25519 {FP_A}"
    assert reaper.parse_accepted(entry(msg, 156, ident)) == accepted(156)


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
    {"SYSLOG_IDENTIFIER": "sshd", "MESSAGE": f"Accepted publickey for t from a port 1 ssh2: ED25519 {FP_A}"},
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
    assert reaper.read_start_ticks(42, tmp_path) == 22
    assert reaper.is_tunnel_monitor(42, "tunnel", tmp_path)
    assert not reaper.is_tunnel_monitor(42, "admin", tmp_path)
    assert reaper.read_start_ticks(43, tmp_path) is None
    assert not reaper.is_tunnel_monitor(43, "tunnel", tmp_path)


def test_own_process_start_time_is_readable():
    assert reaper.read_start_ticks(os.getpid()) is not None


def test_script_runs_and_documents_itself():
    env = dict(os.environ, REVTUNNEL_REAPER_LIB=str(FILES))
    out = subprocess.run([sys.executable, FILES / "revtunnel-reaper", "--help"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "--max-replacements" in out


def test_journal_time_is_kept_and_a_pid_reused_since_is_not_that_session():
    msg = f"Accepted publickey for tunnel from 10.0.0.1 port 1 ssh2: ED25519 {FP_A}"
    session = reaper.parse_accepted({**entry(msg), "__REALTIME_TIMESTAMP": "1700000000500000"})
    assert session.logged_at == 1700000000.5
    assert reaper.is_that_session(session, 1700000000.1)
    assert reaper.is_that_session(session, 1700000000.5 - 100)
    # Started after the line was logged, or long before: another process got that pid.
    assert not reaper.is_that_session(session, 1700000030.0)
    assert not reaper.is_that_session(session, 1700000000.5 - 3600)
    assert reaper.is_that_session(reaper.parse_accepted(entry(msg)), 1.0)


def test_start_time_is_boot_time_plus_ticks(tmp_path):
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n")
    assert reaper.started_at(250, tmp_path, hertz=100) == 1700000002.5
    assert reaper.started_at(None, tmp_path) is None
    assert reaper.started_at(1, tmp_path / "missing") is None


def test_own_process_started_in_the_past():
    assert reaper.started_at(reaper.read_start_ticks(os.getpid()), hertz=os.sysconf("SC_CLK_TCK")) <= time.time()
