# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""unit_set's order of steps with real files and a recorded systemctl: what runs, when, and what a failure says.
systemd itself running, restarting and stopping the hub's units is the day2 and security labs' (metrics timer,
reaper, local access limit)."""

from __future__ import annotations

import os
import time

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._unit_set import (
    UnitError,
    apply_units,
    newer_than_unit,
)

UNIT = "revtunnel-x.service"


class Systemd:
    """systemctl and journalctl as run() sees them: show answers with STATE, FAILS names a refused verb."""

    def __init__(self, active="inactive", enabled="disabled", loaded="loaded", fails=()):
        self.state = {"LoadState": loaded, "ActiveState": active, "UnitFileState": enabled, "NeedDaemonReload": "no"}
        self.fails, self.calls = fails, []

    def __call__(self, argv):
        if argv[0] == "journalctl":
            return 0, "iptables: Permission denied (you must be root)\n", ""
        if argv[1] == "show":
            return 0, f"Id={UNIT}\n" + "".join(f"{k}={v}\n" for k, v in self.state.items()), ""
        self.calls.append(" ".join(argv[1:]))
        return (1, "", f"Job for {UNIT} failed.") if argv[1] in self.fails else (0, "", "")


def unit_file(tmp_path, content=b"[Service]\n", state="present"):
    entry = {"path": str(tmp_path / UNIT), "mode": 0o644, "uid": None, "gid": None, "state": state}
    if state == "present":
        entry["content"] = content
    return entry


def test_a_new_unit_is_read_enabled_and_started_then_left_alone(tmp_path):
    systemd = Systemd()
    result = apply_units(systemd, [], [unit_file(tmp_path)], [UNIT])
    assert systemd.calls == ["daemon-reload", f"enable {UNIT}", f"start {UNIT}"] and result.changed
    systemd.state.update(ActiveState="active", UnitFileState="enabled")
    systemd.calls.clear()
    again = apply_units(systemd, [], [unit_file(tmp_path)], [UNIT], restart=True)
    assert systemd.calls == [] and not again.changed


def test_a_changed_file_restarts_a_running_unit_only_when_asked(tmp_path):
    systemd = Systemd(active="active", enabled="enabled")
    apply_units(systemd, [], [unit_file(tmp_path)], [UNIT])
    assert systemd.calls == ["daemon-reload"]
    systemd.calls.clear()
    result = apply_units(systemd, [], [unit_file(tmp_path, b"[Service]\nX=1\n")], [UNIT], restart=True)
    assert systemd.calls == ["daemon-reload", f"restart {UNIT}"] and result.units[UNIT]["restarted"]


def test_a_unit_that_does_not_start_fails_with_its_journal(tmp_path):
    systemd = Systemd(fails=("start",))
    expected = f"(?s)systemctl start {UNIT} failed: Job for .*journal of {UNIT} says:\niptables: Permission denied"
    with pytest.raises(UnitError, match=expected):
        apply_units(systemd, [], [unit_file(tmp_path)], [UNIT])


def test_absent_stops_the_unit_while_its_file_is_there_then_removes_it(tmp_path):
    apply_units(Systemd(), [], [unit_file(tmp_path)], [UNIT])
    systemd = Systemd(active="active", enabled="enabled")
    seen = []
    original = systemd.__call__

    def run(argv):
        if argv[1:2] == ["disable"]:
            seen.append((tmp_path / UNIT).exists())
        return original(argv)

    result = apply_units(run, [], [unit_file(tmp_path, state="absent")], [UNIT], state="absent")
    assert systemd.calls == [f"disable --now {UNIT}", "daemon-reload"] and seen == [True]
    assert not (tmp_path / UNIT).exists() and result.changed
    gone = Systemd(loaded="not-found", active="inactive", enabled="")
    assert not apply_units(gone, [], [unit_file(tmp_path, state="absent")], [UNIT], state="absent").changed
    assert gone.calls == []


def test_absent_stops_a_running_static_unit_that_has_nothing_to_disable(tmp_path):
    # A timer's service mid-run: stopping the timer leaves it running, and it would write its output again after
    # the files went (the day2 lab saw revtunnel.prom come back).
    systemd = Systemd(active="activating", enabled="static")
    result = apply_units(systemd, [], [unit_file(tmp_path, state="absent")], [UNIT], state="absent")
    assert systemd.calls == [f"stop {UNIT}"] and result.units[UNIT]["stopped"]
    idle = Systemd(active="inactive", enabled="static")
    apply_units(idle, [], [unit_file(tmp_path, state="absent")], [UNIT], state="absent")
    assert idle.calls == []


def test_check_mode_reports_and_only_asks(tmp_path):
    systemd = Systemd(loaded="not-found", enabled="")
    result = apply_units(systemd, [], [unit_file(tmp_path)], [UNIT], check_mode=True)
    assert result.changed and result.reloaded and result.units[UNIT]["started"] and systemd.calls == []
    assert not (tmp_path / UNIT).exists()


def test_a_restart_cut_short_by_an_interrupted_run_is_made_by_the_next_one(tmp_path):
    # The files were written after the unit last started (the run died before the restart): nothing changes now,
    # yet the unit still runs the old configuration, so restart asks for a restart.
    entry = unit_file(tmp_path, b"[Service]\nX=2\n")
    apply_units(Systemd(active="active", enabled="enabled"), [], [entry], [UNIT])
    boot = time.time() - time.monotonic()
    systemd = Systemd(active="active", enabled="enabled")
    systemd.state["ActiveEnterTimestampMonotonic"] = str(int((time.monotonic() - 60) * 1e6))
    result = apply_units(systemd, [], [entry], [UNIT], restart=True)
    assert systemd.calls == [f"restart {UNIT}"] and result.units[UNIT]["restarted"]
    # Started after the files were written: left alone, run after run.
    systemd = Systemd(active="active", enabled="enabled")
    systemd.state["ActiveEnterTimestampMonotonic"] = str(int((time.monotonic() + 5) * 1e6))
    assert not apply_units(systemd, [], [entry], [UNIT], restart=True).changed and systemd.calls == []
    assert newer_than_unit({"ActiveEnterTimestampMonotonic": "0"}, [entry["path"]]) is False
    assert newer_than_unit({}, [entry["path"]], boot_offset=boot) is False


def test_a_file_dated_in_the_future_never_restarts_the_unit(tmp_path):
    path = tmp_path / UNIT
    path.write_text("[Service]\n")
    future = time.time() + 3600
    os.utime(path, (future, future))
    found = {"ActiveEnterTimestampMonotonic": str(int((time.monotonic() - 60) * 1e6))}
    assert newer_than_unit(found, [str(path)]) is False
