# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's copy of a hub's records: what a hub re-installed from nothing needs to get every spoke back.

Two files per hub in the records directory that travels with the lab's inventory (docs/hub-records.md):

- ``<hub>.json``, public and reviewable: the hub's host key (public), its port range, and every spoke's
  ports, trusted keys and ``key_from``, one spoke per line like the registry itself, signed with HMAC-SHA256
  so that an edit or a corruption is refused instead of trusted;
- ``<hub>.secret``, never world-readable and vault-encrypted when the run has a vault password: the hub's
  ed25519 host key pair, which a rebuilt hub gets back so that spokes and operators keep trusting it (and
  nothing else), and the signing key of the public file.

Pure Python with no Ansible import; the action plugins read and write the files on the controller (vault
included) and hand the parsed records to the modules on the hub.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _rules
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.request import normalize_restore
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._rules import RuleError

RECORDS_FORMAT = "hubspoke.revtunnel hub records"
SECRET_FORMAT = "hubspoke.revtunnel hub secret"  # noqa: S105 - the format's name, not a secret
VERSION = 1
SIGNATURE_PREFIX = "hmac-sha256:"
_PRIVATE_KEY = re.compile(
    r"-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n?")


class RecordsError(RuleError):
    """A records file that cannot be used; the message names it and says what to do. Nothing was changed."""


@dataclass(frozen=True)
class Secret:
    """The secret half: the hub's ed25519 host key pair and the key that signs the public half."""

    private_key: str
    public_key: str
    signing_key: bytes


@dataclass(frozen=True)
class Records:
    """The public half, verified: the hub's host key, its range and {spoke: {"ports", "keys", "key_from"}}."""

    host_key: str
    range: dict | None
    spokes: dict
    updated: str = ""


def paths(directory, hub):
    """(public path, secret path) of HUB's records in DIRECTORY."""
    _rules.inventory_name(hub, "hub")
    return os.path.join(directory, f"{hub}.json"), os.path.join(directory, f"{hub}.secret")


def new_signing_key():
    return os.urandom(32)


def _restore_hint(path):
    return (f"Nothing was changed. Restore {path} from version control or your backup (with its .secret beside "
            "it); or, while the hub itself still holds its registry, move the file aside and run site.yml to "
            "write it again from the hub")


def private_key(value, where):
    """An OpenSSH private key block, as ssh-keygen writes it."""
    if not isinstance(value, str) or not _PRIVATE_KEY.fullmatch(value.strip() + "\n"):
        raise RecordsError(f"{where}: the host key is not an OpenSSH private key block")
    return value.strip() + "\n"


def render_secret(hub, secret):
    """The secret file's bytes (before any vault encryption)."""
    data = {
        "format": SECRET_FORMAT,
        "version": VERSION,
        "hub": hub,
        "host_key": {"private": secret.private_key, "public": secret.public_key},
        "signing_key": base64.b64encode(secret.signing_key).decode("ascii"),
    }
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def parse_secret(raw, path, hub):
    """The Secret of a decrypted secret file; RecordsError when it is not HUB's."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordsError(f"{path} is not a readable hub secret ({exc}). {_restore_hint(path)}") from None
    if not isinstance(data, dict) or data.get("format") != SECRET_FORMAT or data.get("version") != VERSION:
        raise RecordsError(f"{path} is not a hubspoke.revtunnel hub secret of version {VERSION}. {_restore_hint(path)}")
    if data.get("hub") != hub:
        raise RecordsError(f"{path} holds the secret of hub {data.get('hub')!r}, not of {hub}. {_restore_hint(path)}")
    keys = data.get("host_key")
    try:
        if not isinstance(keys, dict):
            raise RecordsError(f"{path}: no host_key")
        public = _rules.public_key(keys.get("public"), f"{path}: host_key.public")
        if not public.startswith("ssh-ed25519 "):
            raise RecordsError(f"{path}: the host key is not an ed25519 key")
        signing_key = base64.b64decode(data.get("signing_key") or "", validate=True)
        if len(signing_key) < 32:
            raise RecordsError(f"{path}: the signing key is shorter than 32 bytes")
        return Secret(private_key(keys.get("private"), path), public, signing_key)
    except (RuleError, binascii.Error, ValueError) as exc:
        raise RecordsError(f"{exc}. {_restore_hint(path)}") from None


def _signed_body(data):
    """The canonical bytes a signature covers: everything but the signature, keys sorted, no spaces."""
    body = {key: value for key, value in data.items() if key != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(data, signing_key):
    return SIGNATURE_PREFIX + hmac.new(signing_key, _signed_body(data), hashlib.sha256).hexdigest()


def render_records(hub, host_key, spokes, stored_range, updated, signing_key):
    """The public file's bytes: sorted, one spoke per line (a change is a one-line diff), signed."""
    data = {"format": RECORDS_FORMAT, "version": VERSION, "hub": hub, "host_key": host_key,
            "range": stored_range, "updated": updated,
            "spokes": {name: {"ports": dict(sorted(e["ports"].items())), "keys": list(e["keys"]),
                              "key_from": list(e["key_from"])} for name, e in spokes.items()}}
    signature = sign(data, signing_key)
    text = (
        "{\n"
        f'  "format": {json.dumps(RECORDS_FORMAT)},\n'
        f'  "version": {VERSION},\n'
        f'  "hub": {json.dumps(hub)},\n'
        f'  "host_key": {json.dumps(host_key)},\n'
        f'  "range": {document.range_json(stored_range)},\n'
        f'  "updated": {json.dumps(updated)},\n'
        f'  "spokes": {document.spokes_json(data["spokes"])},\n'
        f'  "signature": {json.dumps(signature)}\n'
        "}\n"
    )
    return text.encode("utf-8")


def parse_records(raw, path, hub, signing_key):
    """The verified Records of a public file; RecordsError for anything edited, corrupt or another hub's."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordsError(f"{path} is not valid JSON ({exc}). {_restore_hint(path)}") from None
    if not isinstance(data, dict) or data.get("format") != RECORDS_FORMAT or data.get("version") != VERSION:
        raise RecordsError(f"{path} is not a hubspoke.revtunnel hub records file of version {VERSION}. "
                           f"{_restore_hint(path)}")
    if data.get("hub") != hub:
        raise RecordsError(f"{path} holds the records of hub {data.get('hub')!r}, not of {hub}. {_restore_hint(path)}")
    signature = data.get("signature")
    if not isinstance(signature, str) or not hmac.compare_digest(signature, sign(data, signing_key)):
        raise RecordsError(
            f"{path} does not match its signature: it was edited by hand or damaged since a run wrote it, so "
            f"its keys and ports are not trusted. {_restore_hint(path)}")
    try:
        host_key = _rules.public_key(data.get("host_key"), f"{path}: host_key")
        spokes = dict(normalize_restore(data.get("spokes"), f"{path}: spokes"))
    except RuleError as exc:
        raise RecordsError(f"{exc}. {_restore_hint(path)}") from None
    stored = data.get("range")
    stored = {"start": stored.get("start"), "end": stored.get("end")} if isinstance(stored, dict) else None
    return Records(host_key=host_key, range=stored, spokes=spokes, updated=str(data.get("updated") or ""))
