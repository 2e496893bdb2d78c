# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of revtunnel_metrics: state between runs, Prometheus text, atomic writes, history, reaper counts.

promtool (from Debian's `prometheus` package, extracted by scripts/test-tools.sh) judges the metrics and the
alert rules; these tests fail, not skip, without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import metrics

ROOT = Path(__file__).resolve().parents[5]
FP_A = "SHA256:WhNFE1EoUD8F0kHSCdtIUPkMWFnaeDWO4XPHDgsHKrI"
FP_B = "SHA256:9Vo86ajRB+Xv8Wpg1KukUp2Bftjr+6SmQTUztZ2Ck7g"


def row(spoke, up, forward="ssh", detail="", seconds=0.01):
    return {"spoke": spoke, "forward": forward, "port": 10000, "up": up, "latency_ms": seconds * 1000,
            "seconds": seconds, "detail": detail or ("SSH-2.0-x" if up else "no SSH banner")}


def journal(when, message, unit="revtunnel-metrics.service"):
    return {"__REALTIME_TIMESTAMP": str(int(when * 1e6)), "MESSAGE": message, "_SYSTEMD_UNIT": unit,
            "SYSLOG_IDENTIFIER": "revtunnel-metrics"}


# --- state ---------------------------------------------------------------------------------------------

def test_last_change_moves_only_when_the_state_changes():
    state = metrics.empty_state()
    assert metrics.update_tunnels(state, [row("a", True), row("b", False)], 100.0) == [
        ("a", "ssh", True, "SSH-2.0-x", True), ("b", "ssh", False, "no SSH banner", True)]
    assert metrics.update_tunnels(state, [row("a", True), row("b", False)], 130.0) == []
    assert state["tunnels"]["a"]["ssh"] == {"up": True, "since": 100.0}
    assert metrics.update_tunnels(state, [row("a", False), row("b", False)], 160.0) == [
        ("a", "ssh", False, "no SSH banner", False)]
    assert state["tunnels"]["a"]["ssh"] == {"up": False, "since": 160.0}
    assert state["tunnels"]["b"]["ssh"]["since"] == 100.0
    # A spoke that left the registry leaves the state; it is first seen again if it comes back.
    metrics.update_tunnels(state, [row("a", False)], 190.0)
    assert "b" not in state["tunnels"]


def test_state_survives_a_round_trip_and_garbage_reads_as_empty():
    state = metrics.empty_state()
    metrics.update_tunnels(state, [row("a", True, forward="web")], 5.0)
    state["reaper"].update(cursor="s=abc", replaced={"a": 3})
    assert metrics.load_state(json.dumps(state)) == state
    for text in ("", "not json", "[]", '{"version": 99}'):
        assert metrics.load_state(text) == metrics.empty_state()


def test_transition_lines_carry_a_priority_and_read_back_as_transitions():
    lines = [metrics.transition_line("lab-pc-1", "ssh", False, "no SSH banner"),
             metrics.transition_line("lab-pc-1", "ssh", True, "SSH-2.0-x"),
             metrics.transition_line("lab-pc-2", "web", False, "Connection refused", first=True),
             metrics.transition_line("lab-pc-3", "ssh", True, "SSH-2.0-x", first=True)]
    assert lines == ["<4>revtunnel: lab-pc-1/ssh down (no SSH banner)", "<5>revtunnel: lab-pc-1/ssh up",
                     "<4>revtunnel: lab-pc-2/web down (first seen, Connection refused)",
                     "<5>revtunnel: lab-pc-3/ssh up (first seen)"]
    # journald strips the <N> prefix
    entries = [journal(10 + i, line[3:]) for i, line in enumerate(lines)]
    assert metrics.parse_transitions(entries) == [
        (10.0, "lab-pc-1", "ssh", False, "no SSH banner", False), (11.0, "lab-pc-1", "ssh", True, "", False),
        (12.0, "lab-pc-2", "web", False, "Connection refused", True), (13.0, "lab-pc-3", "ssh", True, "", True)]


# --- Prometheus ----------------------------------------------------------------------------------------

def sample_text():
    state = metrics.empty_state()
    metrics.update_tunnels(state, [row("lab-pc-1", True), row("lab-pc-2", False), row("lab-pc-2", True, "web")],
                           1700000000.0)
    state["reaper"]["replaced"] = {"lab-pc-1": 2, "unknown": 1}
    state["reaper"]["second_address"] = {"lab-pc-1": 1}
    rows = [row("lab-pc-1", True, seconds=0.0123), row("lab-pc-2", False), row("lab-pc-2", True, "web")]
    return metrics.render_prometheus('hub-"1"\\', rows, state, ["lab-pc-1", "lab-pc-2", "lab-pc-3"])


def test_metrics_have_help_type_and_every_label():
    text = sample_text()
    assert 'revtunnel_tunnel_up{hub="hub-\\"1\\"\\\\",spoke="lab-pc-1",forward="ssh"} 1' in text
    assert 'revtunnel_tunnel_up{hub="hub-\\"1\\"\\\\",spoke="lab-pc-2",forward="ssh"} 0' in text
    assert 'revtunnel_tunnel_probe_seconds{hub="hub-\\"1\\"\\\\",spoke="lab-pc-1",forward="ssh"} 0.012300' in text
    assert ('revtunnel_tunnel_last_change_timestamp_seconds{hub="hub-\\"1\\"\\\\",spoke="lab-pc-2",forward="web"} '
            '1700000000.000') in text
    assert 'revtunnel_tunnel_sessions_replaced_total{hub="hub-\\"1\\"\\\\",spoke="lab-pc-1"} 2' in text
    assert 'revtunnel_tunnel_sessions_replaced_total{hub="hub-\\"1\\"\\\\",spoke="lab-pc-3"} 0' in text
    assert 'revtunnel_tunnel_sessions_replaced_total{hub="hub-\\"1\\"\\\\",spoke="unknown"} 1' in text
    assert 'revtunnel_key_second_address_total{hub="hub-\\"1\\"\\\\",spoke="lab-pc-1"} 1' in text
    assert 'revtunnel_spokes{hub="hub-\\"1\\"\\\\"} 3' in text
    for name, kind, _unused in metrics.METRICS:
        assert f"# TYPE {name} {kind}\n" in text and f"# HELP {name} " in text


# --- reaper counts -------------------------------------------------------------------------------------

def test_reaper_lines_count_per_spoke_and_move_the_cursor():
    state = metrics.empty_state()
    entries = [
        {"MESSAGE": f"key {FP_A}: new session from 192.0.2.7 port 50000 (pid 12) replaces 192.0.2.7 port 4 (pid 9)",
         "__CURSOR": "c1"},
        {"MESSAGE": f"key {FP_B}: new session from 192.0.2.8 port 1 (pid 13) replaces 192.0.2.8 port 2 (pid 10)",
         "__CURSOR": "c2"},
        {"MESSAGE": "replaced the session of spoke lab-pc-2 (pid 14)", "__CURSOR": "c3"},
        {"MESSAGE": f"key {FP_A} of user tunnel is in use from two places: 192.0.2.7 holds the tunnel",
         "__CURSOR": "c4"},
        {"MESSAGE": "following sshd's journal for sessions of user tunnel", "__CURSOR": "c5"},
        {"MESSAGE": "key SHA256:other: new session from x replaces y", "__CURSOR": "c6"},
    ]
    spokes = {"lab-pc-1": {}, "lab-pc-2": {}}
    metrics.count_reaper(state, entries, {FP_A: "lab-pc-1", FP_B: "lab-pc-2"}, spokes)
    assert state["reaper"] == {"cursor": "c6", "replaced": {"lab-pc-1": 1, "lab-pc-2": 2, "unknown": 1},
                               "second_address": {"lab-pc-1": 1}}
    # The next run reads after the cursor and adds to the counters.
    metrics.count_reaper(state, entries[:1], {FP_A: "lab-pc-1"}, spokes)
    assert state["reaper"]["replaced"]["lab-pc-1"] == 2


# --- history -------------------------------------------------------------------------------------------

HOUR = 3600.0


def test_history_finds_outages_availability_and_a_timeline():
    start, end = 0.0, 24 * HOUR
    entries = [
        journal(1 * HOUR, "revtunnel: lab-pc-1/ssh down (no SSH banner)"),
        journal(2 * HOUR, "revtunnel: lab-pc-1/ssh up"),
        journal(20 * HOUR, "revtunnel: lab-pc-1/ssh down (Connection refused)"),
        journal(5 * HOUR, "revtunnel: lab-pc-2/ssh up (first seen)"),
        journal(6 * HOUR, "unrelated line"),
        journal(7 * HOUR, "revtunnel: lab-pc-3/ssh up"),  # down before the window
    ]
    report = {r["spoke"]: r for r in metrics.history(entries, start, end, tunnels=[("lab-pc-4", "ssh")])}
    one = report["lab-pc-1"]
    assert one["now"] == "down"
    assert one["down_seconds"] == 5 * HOUR
    assert one["availability"] == round(19 / 24, 5)
    assert one["outages"] == [
        {"down_at": 1 * HOUR, "up_at": 2 * HOUR, "seconds": HOUR, "detail": "no SSH banner"},
        {"down_at": 20 * HOUR, "up_at": None, "seconds": 4 * HOUR, "detail": "Connection refused"}]
    assert one["timeline"] == "██__" + "█" * 36 + "_" * 8  # half an hour per character
    two = report["lab-pc-2"]
    assert two["availability"] == 1.0 and two["known_seconds"] == 19 * HOUR
    assert two["timeline"] == " " * 10 + "█" * 38
    three = report["lab-pc-3"]
    assert three["outages"] == [{"down_at": None, "up_at": 7 * HOUR, "seconds": 7 * HOUR, "detail": ""}]
    four = report["lab-pc-4"]
    assert four["now"] == "unknown" and four["availability"] is None and four["timeline"] == " " * 48


def test_history_marks_a_flapping_slice_and_uses_the_state_when_the_journal_is_quiet():
    start, end = 0.0, 48 * 60.0  # one minute per character
    entries = [journal(90 + i * 5, f"revtunnel: flappy/ssh {'down' if i % 2 == 0 else 'up'}") for i in range(4)]
    state = metrics.empty_state()
    state["tunnels"] = {"steady": {"ssh": {"up": True, "since": -100.0}},
                        "new": {"ssh": {"up": False, "since": 30 * 60.0}}}
    report = {r["spoke"]: r for r in metrics.history(entries, start, end, state, [("steady", "ssh"), ("new", "ssh")])}
    assert report["flappy"]["timeline"][1] == metrics.TIMELINE_MIXED
    assert len(report["flappy"]["outages"]) == 2
    assert report["steady"]["timeline"] == "█" * 48 and report["steady"]["availability"] == 1.0
    assert report["new"]["timeline"] == " " * 30 + "_" * 18 and report["new"]["now"] == "down"


def test_history_reads_journalctl_json_output():
    lines = [
        '{"__REALTIME_TIMESTAMP":"1000000000","MESSAGE":"revtunnel: a/ssh down (no SSH banner)",'
        '"_SYSTEMD_UNIT":"revtunnel-metrics.service","SYSLOG_IDENTIFIER":"revtunnel-metrics","PRIORITY":"4"}',
        '{"__REALTIME_TIMESTAMP":"1060000000","MESSAGE":[114,101,118,116,117,110,110,101,108,58,32,97,47,115,115,'
        '104,32,117,112],"_SYSTEMD_UNIT":"revtunnel-metrics.service","SYSLOG_IDENTIFIER":"revtunnel-metrics"}',
    ]
    entries = [json.loads(line) for line in lines]
    assert metrics.parse_transitions(entries) == [(1000.0, "a", "ssh", False, "no SSH banner", False),
                                                  (1060.0, "a", "ssh", True, "", False)]
    report = metrics.history(entries, 940.0, 1120.0)
    assert report[0]["availability"] == round(120 / 180, 5)


@pytest.mark.parametrize("text,seconds", [("24h", 86400), ("90m", 5400), ("7d", 604800), ("45s", 45), ("10", 10)])
def test_durations(text, seconds):
    assert metrics.parse_duration(text) == seconds


def test_a_bad_duration_says_what_to_write():
    with pytest.raises(ValueError, match="use e.g. 30m, 24h, 7d"):
        metrics.parse_duration("yesterday")
