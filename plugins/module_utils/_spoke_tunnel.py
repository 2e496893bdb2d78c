# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A spoke's tunnels in one pass: files, retired hubs, systemd, and the restarts that changed files call for.

What the module spoke_tunnel does, in this order:

1. every hub whose files are in the configuration directory but that this run does not list (it left the
   inventory, or the spoke moved to another shard) is retired: its unit stopped and disabled, its files gone.
   A hub that is still the spoke's (``keep``) but not ready in this run (outside --limit, unreachable, failed)
   is never retired: its tunnel keeps running and comes back by itself;
2. the files every tunnel shares (the unit template, the command zipapp) are put in place (_file_set);
3. systemd re-reads the unit when its file changed, or when an interrupted run left it unread
   (NeedDaemonReload: the tunnels of every hub then run a unit systemd has not read);
4. each hub in turn: its pinned host key and ssh configuration, then its unit enabled and started; a unit that
   was already running restarts when its unit, its files or the re-read unit changed it, or when asked to (a
   new key). The restart is deferred by a transient timer (``systemd-run --on-active``), so a run that
   reaches the spoke through this very tunnel finishes the task before the tunnel drops.

A hub whose step fails does not stop the others: each error is collected and the call fails at the end,
naming every hub. It returns, per hub, what the batched banner check needs (port, timeout, and the listener
of the session a restart replaces). ``run(argv) -> (rc, stdout, stderr)`` runs systemctl and systemd-run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _file_set, _rules

HUB_FILE_SUFFIXES = (".ssh_config", ".known_hosts")
RUNNING = frozenset(("active", "activating", "reloading"))


class TunnelError(Exception):
    """One or more hubs' steps failed; the message names each."""


@dataclass
class TunnelResult:
    changed: bool = False
    changed_paths: list = field(default_factory=list)
    retired: list = field(default_factory=list)
    reloaded: bool = False
    hubs: dict = field(default_factory=dict)
    waits: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)


def unit_name(template, hub):
    """revtunnel@.service and hub-a -> revtunnel@hub-a.service."""
    prefix, _at, suffix = template.partition("@")
    return f"{prefix}@{hub}{suffix}"


def parse_show(text):
    """{unit: {property: value}} of ``systemctl show -p Id -p ...`` for several units (blank line between)."""
    units, current = {}, {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current.get("Id"):
                units[current["Id"]] = current
            current = {}
            continue
        key, _sep, value = line.partition("=")
        current[key] = value
    return units


def _systemctl(run, *argv):
    rc, out, err = run(["systemctl", *argv])
    if rc != 0:
        raise TunnelError(f"systemctl {' '.join(argv)} failed (exit {rc}): {(err or out).strip()}")
    return out


def stale_hubs(conf_dir, hubs):
    """Hubs with files in CONF_DIR that HUBS does not list (only names the inventory could have made)."""
    try:
        entries = os.listdir(conf_dir)
    except FileNotFoundError:
        return []
    found = set()
    for entry in entries:
        for suffix in HUB_FILE_SUFFIXES:
            if entry.endswith(suffix):
                name = entry[: -len(suffix)]
                if _rules.INVENTORY_NAME.fullmatch(name) and name not in hubs:
                    found.add(name)
    return sorted(found)


def _retire(hub, conf_dir, template, states, run, check_mode, result):
    unit = unit_name(template, hub)
    state = states.get(unit, {})
    if not check_mode:
        if state.get("LoadState") not in (None, "not-found") or state.get("UnitFileState") == "enabled":
            _systemctl(run, "disable", "--now", unit)
        for suffix in HUB_FILE_SUFFIXES:
            path = os.path.join(conf_dir, hub + suffix)
            if os.path.lexists(path):
                os.unlink(path)
    result.retired.append(hub)
    result.changed_paths.extend(os.path.join(conf_dir, hub + suffix) for suffix in HUB_FILE_SUFFIXES)


def _schedule_restart(hub, unit, delay, run):
    """A transient timer that restarts UNIT in DELAY seconds; its name is unique per hub and moment."""
    argv = ["systemd-run", f"--unit=revtunnel-restart-{hub}-{time.time_ns()}", "--collect",
            f"--on-active={delay}", "--timer-property=AccuracySec=100ms", "systemctl", "restart", unit]
    rc, out, err = run(argv)
    if rc != 0:
        raise TunnelError(f"systemd-run could not schedule the restart of {unit} (exit {rc}): {(err or out).strip()}")


def apply_tunnels(run, directories, files, hubs, unit_file, conf_dir, template="revtunnel@.service",
                  restart_delay=3.0, restart=(), check_mode=False, retire=True, keep=()):
    """The steps of the module docstring; a TunnelResult. HUBS: dicts with name, files, port, timeout, listener.

    DIRECTORIES and FILES (and each hub's files) are _file_set entries, already prepared. A hub in RESTART that
    HUBS does not list is only restarted (a key rotation); with RETIRE false no hub is retired. KEEP: hubs of the
    spoke's inventory that this run may not configure; they are left as they are, never retired.
    """
    result = TunnelResult()
    listed = {hub["name"] for hub in hubs}
    hubs = list(hubs) + [{"name": name, "files": []} for name in restart if name not in listed]
    names = [hub["name"] for hub in hubs]
    for name in names:
        _rules.inventory_name(name, "hubs")
    for name in keep:
        _rules.inventory_name(name, "keep")
    stale = stale_hubs(conf_dir, set(names) | set(keep)) if retire else []
    units = [unit_name(template, name) for name in names + stale]
    states = parse_show(_systemctl(run, "show", "-p", "Id", "-p", "LoadState", "-p", "ActiveState", "-p",
                                   "UnitFileState", "-p", "NeedDaemonReload", *units)) if units else {}
    # Retired first, while their unit file is still there to be disabled.
    for hub in stale:
        try:
            _retire(hub, conf_dir, template, states, run, check_mode, result)
        except (TunnelError, OSError) as exc:
            result.errors.append(f"retiring hub {hub}: {exc}")
    changed, _diffs = _file_set.apply(directories, files, check_mode=check_mode, run=run)
    result.changed_paths.extend(changed)
    unit_changed = unit_file in changed

    unread = any(states.get(unit_name(template, name), {}).get("NeedDaemonReload") == "yes" for name in names)
    if unit_changed or unread or result.retired:
        result.reloaded = True
        if not check_mode:
            _systemctl(run, "daemon-reload")

    for hub in hubs:
        name, unit = hub["name"], unit_name(template, hub["name"])
        state = states.get(unit, {})
        outcome = {"unit": unit, "started": False, "enabled": False, "restarted": False}
        try:
            hub_changed, _diffs = _file_set.apply([], hub["files"], check_mode=check_mode, run=run)
            result.changed_paths.extend(hub_changed)
            if state.get("UnitFileState") != "enabled":
                outcome["enabled"] = True
                if not check_mode:
                    _systemctl(run, "enable", unit)
            running = state.get("ActiveState") in RUNNING
            if not running:
                outcome["started"] = True
                if not check_mode:
                    # --no-block: a hub that is slow to answer is the banner check's to report, with the journal
                    _systemctl(run, "start", "--no-block", unit)
            elif unit_changed or unread or hub_changed or name in restart:
                outcome["restarted"] = True
                if not check_mode:
                    _schedule_restart(name, unit, restart_delay, run)
        except (TunnelError, OSError, _file_set.FileSetError) as exc:
            result.errors.append(f"hub {name}: {exc}")
        result.hubs[name] = outcome
        result.waits[name] = {"port": hub.get("port"), "timeout": hub.get("timeout"),
                              "replaced_listener": list(hub.get("listener") or []) if outcome["restarted"] else []}
    result.changed = bool(result.changed_paths or result.retired or result.reloaded
                          or any(o["started"] or o["enabled"] or o["restarted"] for o in result.hubs.values()))
    return result
