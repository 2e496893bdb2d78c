# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hub's spoke registry: the one record of each spoke's ports and trusted keys.

Pure Python with no Ansible import. The hub's commands (revtunnel-status, the metrics timer,
the reaper) import a copy of this file from /usr/local/lib/revtunnel to read the registry.

Version 2 (docs/registry-format.md)::

    {"version": 2, "range": {"start": 10000, "end": 10999}, "updated": "2026-01-31T12:00:00Z",
     "spokes": {"lab-pc-1": {"ports": {"ssh": 10000},
                             "keys": ["ssh-ed25519 AAAA..."],
                             "key_from": ["192.0.2.0/24"]}}}

Version 1 held only ``"ports": {name: {forward: port}}``; readers accept both.
"""

from __future__ import annotations

import base64
import hashlib
import json

REGISTRY_VERSION = 2
DEFAULT_PATH = "/var/lib/revtunnel/ports.json"


def spokes_from_document(document):
    """{spoke: {"ports": {...}, "keys": [...], "key_from": [...]}} from a parsed v1 or v2 registry."""
    if not isinstance(document, dict):
        return {}
    if document.get("version") == 1:
        return {
            name: {"ports": dict(forwards), "keys": [], "key_from": []}
            for name, forwards in (document.get("ports") or {}).items()
            if isinstance(forwards, dict)
        }
    spokes = {}
    for name, entry in (document.get("spokes") or {}).items():
        if not isinstance(entry, dict):
            continue
        spokes[name] = {
            "ports": dict(entry.get("ports") or {}),
            "keys": list(entry.get("keys") or []),
            "key_from": list(entry.get("key_from") or []),
        }
    return spokes


def read_spokes(path=DEFAULT_PATH):
    """The spokes of the registry at ``path`` (v1 or v2); {} when there is no registry yet.

    Raises ValueError when the file is not a registry, OSError when it cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        return {}
    if not isinstance(document, dict) or document.get("version") not in (1, 2):
        raise ValueError(f"{path} is not a hubspoke.revtunnel registry of version 1 or 2")
    return spokes_from_document(document)


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
