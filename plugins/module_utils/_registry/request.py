# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one validator of a registry run: every input is checked here, through the rulebook, before any read."""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _rules
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._rules import RuleError

DEFAULT_RANGE_START = 10000
DEFAULT_RANGE_END = 10999
PRIMARY_FORWARD = _rules.PRIMARY_FORWARD
SPOKE_FIELDS = frozenset(("name", "port", "forwards", "key", "key_from"))
FORWARD_FIELDS = frozenset(("name", "port", "host"))
CHANGE_FIELDS = frozenset(("name", "key"))
TRUST_FIELDS = frozenset(("name", "key", "current"))
RESTORE_FIELDS = frozenset(("ports", "keys", "key_from"))


@dataclass(frozen=True)
class SpokeInput:
    """One listed spoke after validation. ``key`` None keeps the registry's keys; ``key_from`` None keeps the
    registry's patterns (port_allocation never sets it)."""

    name: str
    forwards: tuple
    pin: int | None = None
    key: str | None = None
    key_from: tuple | None = None


@dataclass(frozen=True)
class Request:
    """A validated run: ``spokes`` None means no sync (trust/forget only).

    ``current`` maps a spoke to the key it holds now, given with a trust: after the run it trusts exactly
    that key and the trusted one, so the next key of a rotation cut short never piles up as a third.
    ``restore`` maps a spoke to the entry the controller's copy holds for it: it fills what the registry
    lacks (a rebuilt hub), never what the registry holds.
    """

    spokes: tuple | None = None
    trust: tuple = ()
    forget: tuple = ()
    current: tuple = ()
    restore: tuple = ()


def _forward(forward, where):
    if isinstance(forward, dict):
        unknown = sorted(set(forward) - FORWARD_FIELDS)
        if unknown:
            raise RuleError(
                f"{where}: revtunnel_forwards entry {forward!r} has unknown key(s) {', '.join(unknown)}: "
                "allowed are name, port, host"
            )
        name = _rules.forward_name(forward.get("name"), f"{where}: revtunnel_forwards")
        if name == PRIMARY_FORWARD:
            raise RuleError(
                f"{where}: revtunnel_forwards names 'ssh', which is the tunnel itself: "
                "rename the forward (the ssh forward's hub port is revtunnel_port)"
            )
        if forward.get("port") is not None:
            try:
                _rules.port(forward["port"], "")
            except RuleError:
                raise RuleError(f"{where}: revtunnel_forwards {name!r} has port {forward['port']!r}: "
                                "give the service's port, 1-65535") from None
        if forward.get("host") is not None:
            _rules.forward_host(forward["host"], where, name)
        return name
    return _rules.forward_name(forward, f"{where}: revtunnel_forwards")


def forward_names(forwards, where):
    """("ssh", the spoke's other forward names...) of a revtunnel_forwards list of names or dicts."""
    if forwards is None:
        forwards = []
    if not isinstance(forwards, (list, tuple)):
        raise RuleError(f"{where}: revtunnel_forwards must be a list, got {forwards!r}")
    names = []
    for forward in forwards:
        name = _forward(forward, where)
        if name in names:
            raise RuleError(f"{where} lists forward {name!r} twice in revtunnel_forwards: list each forward once")
        names.append(name)
    return (PRIMARY_FORWARD,) + tuple(n for n in names if n != PRIMARY_FORWARD)


def normalize_spokes(spokes, range_start, range_end):
    """Validate the ``spokes`` option: SpokeInput objects in input order."""
    if not isinstance(spokes, (list, tuple)):
        raise RuleError(f"spokes must be a list of dicts with a 'name', got {type(spokes).__name__}")
    result, seen, pinned_by = [], {}, {}
    for index, spoke in enumerate(spokes, start=1):
        where = f"spoke #{index}"
        if not isinstance(spoke, dict):
            raise RuleError(f"{where} must be a dict with a 'name', got {spoke!r}")
        unknown = sorted(set(spoke) - SPOKE_FIELDS)
        if unknown:
            raise RuleError(
                f"{where} has unknown key(s) {', '.join(unknown)}: allowed are {', '.join(sorted(SPOKE_FIELDS))}"
            )
        name = _rules.inventory_name(spoke.get("name"), where)
        if name in seen:
            raise RuleError(f"spoke name {name!r} is listed twice (#{seen[name]} and #{index}): list each spoke once")
        seen[name] = index
        where = f"spoke {name}"
        forwards = forward_names(spoke.get("forwards"), where)
        pin = spoke.get("port")
        if pin is not None:
            if not _rules.is_int(pin):
                raise RuleError(f"{where}: revtunnel_port must be an integer, got {pin!r}")
            if not range_start <= pin <= range_end:
                raise RuleError(
                    f"port {pin} pinned for {name} is outside the port range {range_start}-{range_end}: "
                    "pin a port inside the range (revtunnel_port) or widen the range "
                    "(revtunnel_port_range_start, revtunnel_port_range_end)"
                )
            if pin in pinned_by:
                raise RuleError(
                    f"port {pin} is pinned for both {pinned_by[pin]} and {name}: "
                    "pin each port for one spoke only (revtunnel_port)"
                )
            pinned_by[pin] = name
        key = spoke.get("key")
        if isinstance(key, str) and not key.strip():
            key = None  # "" from a template's default(''): no key in this run
        if key is not None:
            key = _rules.public_key(key, f"{where}: the spoke's public key (key)")
        key_from = _rules.key_from(spoke.get("key_from"), where)
        result.append(SpokeInput(name=name, forwards=forwards, pin=pin, key=key, key_from=key_from))
    return tuple(result)


def normalize_changes(changes, option, fields=CHANGE_FIELDS):
    """Validate ``trust`` or ``forget``: a tuple of (name, key line, current key line or None)."""
    if changes is None:
        return ()
    if not isinstance(changes, (list, tuple)):
        raise RuleError(f"{option} must be a list of dicts with 'name' and 'key', got {changes!r}")
    result = []
    for index, change in enumerate(changes, start=1):
        where = f"{option} #{index}"
        if not isinstance(change, dict) or set(change) - fields:
            raise RuleError(f"{where} must be a dict with {', '.join(sorted(fields))}, got {change!r}")
        _rules.inventory_name(change.get("name"), where)
        key = _rules.public_key(change.get("key"), f"{option} for spoke {change['name']}")
        current = change.get("current")
        if current not in (None, ""):
            current = _rules.public_key(current, f"{option} (current) for spoke {change['name']}")
        else:
            current = None
        result.append((change["name"], key, current))
    return tuple(result)


def normalize_restore(restore, where="restore"):
    """Validate the controller copy's entries: ((name, {"ports", "keys", "key_from"}), ...) sorted by name."""
    if restore is None:
        return ()
    if not isinstance(restore, dict):
        raise RuleError(f"{where} must map spoke names to registry entries, got {type(restore).__name__}")
    result, owner = [], {}
    for name in sorted(restore):
        entry = restore[name]
        label = f"{where}: spoke {name!r}"
        _rules.inventory_name(name, label)
        if not isinstance(entry, dict) or set(entry) - RESTORE_FIELDS:
            raise RuleError(f"{label} must be an object with {', '.join(sorted(RESTORE_FIELDS))}")
        ports = entry.get("ports") or {}
        if not isinstance(ports, dict):
            raise RuleError(f"{label}: 'ports' must map forward names to ports")
        for forward, port in ports.items():
            _rules.forward_name(forward, label)
            port = _rules.port(port, f"{label} port of {forward!r}")
            if port in owner:
                raise RuleError(f"{where} gives port {port} to both {owner[port]} and {name}/{forward}")
            owner[port] = f"{name}/{forward}"
        keys = entry.get("keys") or []
        if not isinstance(keys, list) or len(keys) > _rules.MAX_SPOKE_KEYS:
            raise RuleError(f"{label}: 'keys' must be a list of at most {_rules.MAX_SPOKE_KEYS} public key lines")
        keys = [_rules.public_key(key, label) for key in keys]
        key_from = list(_rules.key_from(entry.get("key_from") or [], label))
        result.append((name, {"ports": {f: int(p) for f, p in sorted(ports.items())}, "keys": keys,
                              "key_from": key_from}))
    return tuple(result)


def prepare_request(spokes=None, trust=None, forget=None, range_start=None, range_end=None, restore=None):
    """Validate every input of a run before anything is read or written."""
    range_start = DEFAULT_RANGE_START if range_start is None else range_start
    range_end = DEFAULT_RANGE_END if range_end is None else range_end
    _rules.port_range(range_start, range_end)
    trusted = normalize_changes(trust, "trust", TRUST_FIELDS)
    return Request(
        spokes=None if spokes is None else normalize_spokes(spokes, range_start, range_end),
        trust=tuple((name, key) for name, key, _current in trusted),
        forget=tuple((name, key) for name, key, _current in normalize_changes(forget, "forget")),
        current=tuple((name, current) for name, _key, current in trusted if current is not None),
        restore=normalize_restore(restore),
    )
