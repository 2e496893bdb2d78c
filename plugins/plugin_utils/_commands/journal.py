# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading the journal as journalctl's JSON: what the commands trust of it, and how they decode it."""

from __future__ import annotations

import json
import subprocess


def text(value):
    """journalctl -o json gives a string, or a list of byte values for non-UTF-8 fields; None otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) for b in value):
        return bytes(value).decode("utf-8", "replace")
    return None


def message(entry):
    """An entry's MESSAGE as text ('' when it has none)."""
    return text(entry.get("MESSAGE")) or ""


def timestamp(entry):
    """An entry's __REALTIME_TIMESTAMP in Unix seconds, or None."""
    value = entry.get("__REALTIME_TIMESTAMP")
    return int(value) / 1e6 if isinstance(value, str) and value.isdigit() else None


def entries(*match, since=None, after_cursor=None, lines=None):
    """Parsed JSON entries of the journal (oldest first), or None when journalctl is missing or refuses."""
    cmd = ["journalctl", "--output=json", "--no-pager", "--quiet", *match]
    if since is not None:
        cmd.append("--since=@%d" % int(since))
    if after_cursor:
        cmd.append(f"--after-cursor={after_cursor}")
    if lines is not None:
        cmd.append(f"--lines={lines}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    found = []
    for line in proc.stdout.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def from_unit(found, unit):
    """Only lines the unit itself wrote (journald's trusted _SYSTEMD_UNIT), not lookalikes from `logger`."""
    return [e for e in found if e.get("_SYSTEMD_UNIT") == unit]
