# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The registry file: its versions, its one parser and serializer, and the readers of the hub's commands.

Version 2 (docs/registry-format.md)::

    {"version": 2, "range": {"start": 10000, "end": 10999}, "updated": "2026-01-31T12:00:00Z",
     "spokes": {"lab-pc-1": {"ports": {"ssh": 10000},
                             "keys": ["ssh-ed25519 AAAA..."],
                             "key_from": ["192.0.2.0/24"]}}}

``keys`` holds public key lines "type base64" without comment: one normally, two during a key rotation.
``key_from`` holds sshd ``from=`` patterns; empty means no restriction. Version 1 held only
``"ports": {name: {forward: port}}``; it is read the same way and migrated the first time the registry is
written, without moving any port. Every reader goes through :func:`parse`, so what the hub's commands
trust is exactly what the writer accepts.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from dataclasses import dataclass

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs, _rules
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._rules import RuleError

REGISTRY_VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_PATH = "/var/lib/revtunnel/ports.json"
ENTRY_FIELDS = ("ports", "keys", "key_from")


class RegistryError(RuleError):
    """An unusable registry or input; the message says what to change."""


@dataclass(frozen=True)
class Document:
    """A parsed registry: its version, {spoke: {"ports", "keys", "key_from"}} and its stored range or None."""

    version: int
    spokes: dict
    range: dict | None = None


def untouched_hint(path):
    return f"the file was left untouched: restore it from {path}.bak or move it aside to start a new registry"


def entry_label(name, forward):
    """The "name/forward" form used in added, released and moved."""
    return f"{name}/{forward}"


def _load(raw, path):
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"registry {path} is not valid JSON ({exc}); {untouched_hint(path)}") from exc
    if not isinstance(data, dict) or "version" not in data:
        raise RegistryError(f"registry {path} is not a port registry (no 'version' key); {untouched_hint(path)}")
    version = data["version"]
    if not _rules.is_int(version) or version not in READABLE_VERSIONS:
        raise RegistryError(
            f"registry {path} has format version {version!r} but this collection reads version 1 or 2 only; "
            "upgrade hubspoke.revtunnel, or move the file aside to start a new registry "
            "(the file was left untouched)"
        )
    return data


def _entries(data, path):
    """{name: raw entry dict with "ports"} of either version."""
    if data["version"] == 1:
        ports = data.get("ports")
        if not isinstance(ports, dict):
            raise RegistryError(f"registry {path} has no 'ports' object; {untouched_hint(path)}")
        return {name: {"ports": forwards} for name, forwards in ports.items()}
    spokes = data.get("spokes")
    if not isinstance(spokes, dict):
        raise RegistryError(f"registry {path} has no 'spokes' object; {untouched_hint(path)}")
    for name, entry in spokes.items():
        if not isinstance(entry, dict):
            raise RegistryError(
                f"registry {path}: entry {name!r} must be an object with 'ports'; {untouched_hint(path)}"
            )
    return spokes


def _entry(name, entry, path, owner):
    where = f"registry {path}: entry {name!r}"
    unknown = sorted(set(entry) - set(ENTRY_FIELDS))
    if unknown:
        raise RuleError(f"{where} has unknown field(s) {', '.join(unknown)}")
    _rules.inventory_name(name, where)
    forwards = entry.get("ports")
    if not isinstance(forwards, dict) or not forwards:
        raise RuleError(f"{where} must map forward names to ports")
    for forward, port in forwards.items():
        _rules.forward_name(forward, where)
        if not _rules.is_int(port) or not 1 <= port <= _rules.PORT_CEILING:
            raise RuleError(f"{where} has port {port!r} for {forward!r}, not a TCP port")
        label = entry_label(name, forward)
        if port in owner:
            raise RuleError(f"registry {path} gives port {port} to both {owner[port]} and {label}")
        owner[port] = label
    keys = entry.get("keys") or []
    if not isinstance(keys, list) or len(keys) > _rules.MAX_SPOKE_KEYS:
        raise RuleError(f"{where}: 'keys' must be a list of at most {_rules.MAX_SPOKE_KEYS} public key lines")
    keys = [_rules.public_key(key, where) for key in keys]
    if len(set(keys)) != len(keys):
        raise RuleError(f"{where}: 'keys' lists one key twice")
    key_from = entry.get("key_from") or []
    if not isinstance(key_from, list):
        raise RuleError(f"{where}: 'key_from' must be a list")
    _rules.key_from(key_from, where)
    return {"ports": dict(sorted(forwards.items())), "keys": keys, "key_from": list(key_from)}


def parse(raw, path):
    """The Document of registry bytes of version 1 or 2, every entry validated; raise RegistryError otherwise."""
    data = _load(raw, path)
    spokes, owner = {}, {}
    for name, entry in _entries(data, path).items():
        try:
            spokes[name] = _entry(name, entry, path, owner)
        except RuleError as exc:
            raise RegistryError(f"{exc}; {untouched_hint(path)}") from None
    stored = data.get("range")
    stored = {"start": stored.get("start"), "end": stored.get("end")} if isinstance(stored, dict) else None
    return Document(version=data["version"], spokes=spokes, range=stored)


def read(path=DEFAULT_PATH):
    """The Document at PATH, or None when there is no registry yet. Raises RegistryError, OSError."""
    raw = _fs.read_bytes(path)
    return None if raw is None else parse(raw, path)


def read_spokes(path=DEFAULT_PATH):
    """The spokes of the registry at PATH; {} when there is no registry yet (the hub's commands read this)."""
    document = read(path)
    return {} if document is None else document.spokes


def utc_timestamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry_json(entry):
    ordered = {"ports": dict(sorted(entry["ports"].items())), "keys": list(entry["keys"]),
               "key_from": list(entry["key_from"])}
    return json.dumps(ordered, separators=(", ", ": "))


def spokes_json(spokes, indent="    "):
    """The spokes object, sorted, one spoke per line, so a change is a one-line diff."""
    lines = [f"{indent}{json.dumps(name)}: {_entry_json(spokes[name])}" for name in sorted(spokes)]
    return "{\n" + ",\n".join(lines) + "\n" + indent[2:] + "}" if lines else "{}"


def range_json(stored_range):
    if stored_range is None:
        return "null"
    return f'{{"start": {json.dumps(stored_range["start"])}, "end": {json.dumps(stored_range["end"])}}}'


def serialize(spokes, stored_range, updated):
    """Registry version 2 as bytes."""
    text = (
        "{\n"
        f'  "version": {REGISTRY_VERSION},\n'
        f'  "range": {range_json(stored_range)},\n'
        f'  "updated": {json.dumps(updated)},\n'
        f'  "spokes": {spokes_json(spokes)}\n'
        "}\n"
    )
    return text.encode("utf-8")


def format_ports(ports):
    """JSON of a ports map, one spoke per line, sorted (port_allocation's diff)."""
    if not ports:
        return "{}"
    lines = [f"  {json.dumps(name)}: {json.dumps(ports[name], sort_keys=True)}" for name in sorted(ports)]
    return "{\n" + ",\n".join(lines) + "\n}"


def key_fingerprint(key):
    """OpenSSH's SHA256 fingerprint ("SHA256:...", unpadded base64) of a public key line "type base64 ..."."""
    blob = base64.b64decode(key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def fingerprints(spokes):
    """{fingerprint: spoke name} of every key the registry trusts."""
    found = {}
    for name, entry in spokes.items():
        for key in entry.get("keys", []):
            try:
                found[key_fingerprint(key)] = name
            except (IndexError, ValueError):
                continue
    return found
