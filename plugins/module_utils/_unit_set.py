# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One service's files and systemd units in one pass: the logic of the unit_set module.

State present: the files go in place (_file_set), systemd re-reads its units when a unit file changed (or an
interrupted run left one unread), and each unit is enabled and started; with ``restart``, a unit that was
running restarts when the files changed. State absent: each unit is stopped and disabled while its file is still
there (a unit's ExecStop may have work to do), then the files go and systemd forgets them.
A unit that does not start fails the call with the last lines of its journal. ``run(argv) -> (rc, out, err)``
runs systemctl and journalctl. Nothing here knows Ansible.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _file_set
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_tunnel import RUNNING, parse_show

UNIT_SUFFIXES = (".service", ".timer", ".socket", ".path", ".target", ".mount")
JOURNAL_LINES = 15


class UnitError(Exception):
    """A unit that systemd would not enable, start, restart or stop; the message holds its journal."""


@dataclass
class UnitResult:
    changed: bool = False
    changed_paths: list = field(default_factory=list)
    reloaded: bool = False
    units: dict = field(default_factory=dict)
    diffs: list = field(default_factory=list)


def _said(rc, out, err):
    return (err or out or "").strip() or f"exit {rc}"


def _systemctl(run, unit, *argv):
    rc, out, err = run(["systemctl", *argv])
    if rc != 0:
        _rc, journal, _err = run(["journalctl", "-u", unit, "-n", str(JOURNAL_LINES), "--no-pager", "-o", "cat"])
        raise UnitError(f"systemctl {' '.join(argv)} failed: {_said(rc, out, err)}. The journal of {unit} says:\n"
                        f"{journal.strip() or '(nothing)'}")


def newer_than_unit(found, paths, now=None, boot_offset=None):
    """Whether one of PATHS changed after the unit FOUND (systemctl show) last started: a run cut short between
    writing the files and the restart left it running its old configuration, and the next run must restart it."""
    try:
        since_boot = int(found.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
    except ValueError:
        return False
    if since_boot <= 0:
        return False
    now = time.time() if now is None else now
    offset = now - time.monotonic() if boot_offset is None else boot_offset
    started = offset + since_boot
    for path in paths:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        # A file dated in the future (a clock step) would restart the unit at every run: only the past counts.
        if started + 1.0 < mtime <= now:
            return True
    return False


def apply_units(run, directories, files, units, state="present", restart=False, check_mode=False, want_diff=False):
    """The steps of the module docstring; a UnitResult. DIRECTORIES and FILES are _file_set entries, prepared."""
    result = UnitResult()
    rc, out, err = run(["systemctl", "show", "-p", "Id", "-p", "LoadState", "-p", "ActiveState", "-p",
                        "UnitFileState", "-p", "NeedDaemonReload", "-p", "ActiveEnterTimestampMonotonic", *units])
    if rc != 0:
        raise UnitError(f"systemctl show {' '.join(units)} failed: {_said(rc, out, err)}")
    states = parse_show(out)
    outcomes = {unit: {"enabled": False, "started": False, "restarted": False, "stopped": False} for unit in units}
    if state == "absent":
        for unit in units:
            found = states.get(unit, {})
            if found.get("LoadState", "not-found") != "not-found" and (
                    found.get("ActiveState") in RUNNING or found.get("UnitFileState") == "enabled"):
                outcomes[unit]["stopped"] = True
                if not check_mode:
                    # A static unit (a timer's service) has nothing to disable: it is only stopped.
                    _systemctl(run, unit, *(("disable", "--now") if found.get("UnitFileState") == "enabled"
                                            else ("stop",)), unit)
    changed, result.diffs = _file_set.apply(directories, files, check_mode=check_mode, want_diff=want_diff, run=run)
    result.changed_paths = changed
    unread = any(states.get(unit, {}).get("NeedDaemonReload") == "yes" for unit in units)
    if any(path.endswith(UNIT_SUFFIXES) for path in changed) or (unread and state == "present"):
        result.reloaded = True
        if not check_mode:
            _systemctl(run, units[0] if units else "systemd", "daemon-reload")
    if state == "present":
        for unit in units:
            found, outcome = states.get(unit, {}), outcomes[unit]
            if found.get("UnitFileState") != "enabled":
                outcome["enabled"] = True
                if not check_mode:
                    _systemctl(run, unit, "enable", unit)
            if found.get("ActiveState") not in RUNNING:
                outcome["started"] = True
                if not check_mode:
                    _systemctl(run, unit, "start", unit)
            elif restart and (changed or newer_than_unit(found, [f["path"] for f in files])):
                outcome["restarted"] = True
                if not check_mode:
                    _systemctl(run, unit, "restart", unit)
    result.units = outcomes
    result.changed = bool(changed or result.reloaded or any(any(o.values()) for o in outcomes.values()))
    return result
