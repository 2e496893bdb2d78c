# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hub's ed25519 host key: read it for pinning and for the controller's copy, or restore it from that copy.

A hub re-installed from nothing gets a new host key, which every spoke and operator refuses (they pin the
old one, and nothing else). Restoring the old key pair is what lets them trust the rebuilt hub without
trusting anyone else: a machine in the middle has neither the old key nor a way to get it. The key pair is
checked before it is put in place (``ssh-keygen -y`` derives the public key from the private one), and
both files are written atomically, the private one 0600 and root's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs, _rules

DEFAULT_PATH = "/etc/ssh/ssh_host_ed25519_key"


class HostKeyError(Exception):
    """The host key cannot be read or restored; the message says why."""


@dataclass
class HostKeyResult:
    changed: bool
    restored: bool
    public_key: str
    private_key: str | None = None


def _public_of(raw, path):
    try:
        key = _rules.public_key((raw or b"").decode("utf-8", "replace").strip(), path)
    except _rules.RuleError as exc:
        raise HostKeyError(f"{path} is not a public key: {exc}") from None
    if not key.startswith("ssh-ed25519 "):
        raise HostKeyError(f"{path} holds no ed25519 key")
    return key


def _derive_public(private_path, run, ssh_keygen):
    rc, out, err = run([ssh_keygen, "-y", "-f", private_path])
    if rc != 0:
        raise HostKeyError(f"ssh-keygen cannot read the private host key ({(err or out).strip()})")
    return _public_of(out.encode("utf-8"), f"{ssh_keygen} -y")


def ensure_host_key(run, path=DEFAULT_PATH, private_key=None, public_key=None, check_mode=False,
                    ssh_keygen="/usr/bin/ssh-keygen"):
    """Read the host key pair at PATH, or make it PRIVATE_KEY/PUBLIC_KEY; a HostKeyResult.

    Without PRIVATE_KEY the pair on the host is returned (private key included, for the controller's copy).
    ``run(argv) -> (rc, stdout, stderr)`` runs ssh-keygen.
    """
    current_private = _fs.read_bytes(path)
    current_public = _fs.read_bytes(path + ".pub")
    if private_key is None:
        if current_private is None or current_public is None:
            raise HostKeyError(f"the hub has no ed25519 host key at {path}: install and start openssh-server "
                               "(it makes the host keys), then run again")
        return HostKeyResult(False, False, _public_of(current_public, path + ".pub"),
                             current_private.decode("utf-8", "replace"))
    want_public = _public_of(public_key.encode("utf-8"), "public_key")
    want_private = private_key.encode("utf-8")
    have_public = None
    if current_public is not None:
        try:
            have_public = _public_of(current_public, path + ".pub")
        except HostKeyError:
            have_public = None
    if current_private == want_private and have_public == want_public:
        return HostKeyResult(False, False, want_public)
    if check_mode:
        return HostKeyResult(True, True, want_public)
    staged = _fs.stage(path, want_private, 0o600, 0, 0, best_effort_owner=True)
    try:
        derived = _derive_public(staged, run, ssh_keygen)
        if derived != want_public:
            raise HostKeyError("the saved host key pair does not match: its private key gives another public key; "
                               "restore the hub's .secret file from your backup")
        os.replace(staged, path)
    except BaseException:
        _fs.discard([staged])
        raise
    _fs.replace(path + ".pub", (want_public + "\n").encode("utf-8"), 0o644, 0, 0, best_effort_owner=True)
    return HostKeyResult(True, True, want_public)
