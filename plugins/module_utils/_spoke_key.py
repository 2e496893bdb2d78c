# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The spoke's tunnel key: made on the spoke, readable by its account only, its public half derived from it.

Pure Python with no Ansible import; the commands it runs go through a ``run(argv) -> (rc, out, err)`` callable
so the module can pass AnsibleModule.run_command and tests a real subprocess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import FileSetError, ensure_directory

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


class SpokeKeyError(Exception):
    """The key could not be made or read; the message says what to check."""


@dataclass
class KeyResult:
    """What ensure_key did (or, in check mode, would do)."""

    changed: bool
    created: bool
    public_key: str | None


def _public_line(text):
    fields = text.split()
    if len(fields) < 2:
        raise SpokeKeyError(f"ssh-keygen printed no public key: {text!r}")
    return " ".join(fields[:2])


def _fix_attributes(path, mode, uid, gid, check_mode):
    """Set owner and mode when they differ; True when something was (or would be) changed."""
    st = os.stat(path)
    differs = (st.st_mode & 0o7777) != mode or (uid is not None and st.st_uid != uid) or (
        gid is not None and st.st_gid != gid)
    if differs and not check_mode:
        os.chown(path, uid if uid is not None else -1, gid if gid is not None else -1)
        os.chmod(path, mode)
    return differs


def ensure_key(path, run, ssh_keygen="/usr/bin/ssh-keygen", comment="", uid=None, gid=None, check_mode=False,
               directory_mode=None):
    """Make an ed25519 key at ``path`` unless one is there, keep it 0600 (and its .pub 0644) for uid:gid.

    With DIRECTORY_MODE, the key's directory is made or mended first: that mode, owned by uid:gid.
    Returns the public key derived from the private key ("type base64", no comment), so the hub always
    trusts the key the tunnel really uses; in check mode, None when the key does not exist yet.
    """
    created = False
    directory_changed = False
    if directory_mode is not None:
        try:
            directory_changed = ensure_directory(os.path.dirname(path), directory_mode, uid, gid, check_mode)
        except FileSetError as exc:
            raise SpokeKeyError(f"{exc}: the key cannot live there") from None
    if not os.path.exists(path):
        if check_mode:
            return KeyResult(changed=True, created=True, public_key=None)
        rc, _out, err = run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
        if rc != 0:
            raise SpokeKeyError(f"ssh-keygen could not make {path}: {err.strip()}")
        created = True
    # ssh-keygen refuses to read a private key that others may read: mend the mode before reading it.
    changed = _fix_attributes(path, PRIVATE_MODE, uid, gid, check_mode) or created or directory_changed
    public_path = path + ".pub"
    if check_mode and changed:
        return KeyResult(changed=True, created=created, public_key=_stored_public_key(public_path))
    rc, out, err = run([ssh_keygen, "-y", "-f", path])
    if rc != 0:
        raise SpokeKeyError(f"ssh-keygen cannot read the private key {path} ({err.strip()}): "
                            "move the damaged key aside and run again to make a new one")
    public_key = _public_line(out)
    if _stored_public_key(public_path) != public_key:
        changed = True
        if not check_mode:
            _write_public(public_path, public_key + (f" {comment}" if comment else "") + "\n")
    if os.path.exists(public_path) and _fix_attributes(public_path, PUBLIC_MODE, uid, gid, check_mode):
        changed = True
    return KeyResult(changed=changed, created=created, public_key=public_key)


def next_path(path):
    """Where a rotation keeps its next key until every hub trusts it."""
    return path + ".next"


def make_next(path, run, **options):
    """(the current key's KeyResult, the next key's): the next key is made beside the current one, or the one a
    rotation cut short left there is kept, since a hub may already trust it."""
    return ensure_key(path, run, **options), ensure_key(next_path(path), run, **options)


def promote_next(path, run, check_mode=False, **options):
    """Put the next key (private, then public) in place of the current one, when there is one; the KeyResult of
    the key in place now. Run again after a rotation that finished, it finds no next key and changes nothing."""
    moved = os.path.exists(next_path(path))
    if moved and not check_mode:
        os.replace(next_path(path), path)
        if os.path.exists(next_path(path) + ".pub"):
            os.replace(next_path(path) + ".pub", path + ".pub")
        _fs.fsync_dir(os.path.dirname(os.path.abspath(path)))
    if moved and check_mode:
        return KeyResult(changed=True, created=False, public_key=_stored_public_key(next_path(path) + ".pub"))
    result = ensure_key(path, run, check_mode=check_mode, **options)
    result.changed = result.changed or moved
    return result


def _stored_public_key(path):
    """The public key in a .pub file, or None when it is missing or holds none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return _public_line(handle.read())
    except (OSError, SpokeKeyError):
        return None


def _write_public(path, text):
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temp, path)
