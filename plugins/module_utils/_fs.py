# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one atomic writer of the collection, and the few file helpers around it.

A new content is written to a temporary file beside its target (``.<name>.XXXXXX.tmp``), given its mode and
owner there, fsynced, and renamed over the target; the directory is fsynced after the rename. A reader sees
the old file or the new one, never a part of one or a wrong mode. Pure Python with no Ansible import: the
modules, the registry and the hub's commands all write through here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile

TEMP_SUFFIX = ".tmp"


def read_bytes(path):
    """The bytes of PATH, or None when there is no such file."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def fsync_dir(directory):
    """A rename is durable only once the directory entry itself reaches the disk."""
    fd = os.open(directory or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_prefix(path):
    return "." + os.path.basename(path) + "."


def stage(path, data, mode=0o644, uid=None, gid=None, best_effort_owner=False):
    """A temporary file beside PATH holding DATA, mode and owner already set, synced; returns its path.

    With ``best_effort_owner`` an owner that cannot be set (not root) is left as it is; else that fails.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if uid is not None or gid is not None:
                try:
                    os.fchown(handle.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
                except PermissionError:
                    if not best_effort_owner:
                        raise
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
    except BaseException:
        discard([temporary])
        raise
    return temporary


def discard(temporaries):
    for temporary in list(temporaries):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def replace(path, data, mode=0o644, uid=None, gid=None, sync_dir=True, best_effort_owner=False):
    """Put DATA in place of PATH atomically (stage, rename, directory fsync)."""
    temporary = stage(path, data, mode, uid, gid, best_effort_owner)
    try:
        os.replace(temporary, path)
    except BaseException:
        discard([temporary])
        raise
    if sync_dir:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def remove_stale_temps(path):
    """Remove the temporary files a writer of PATH left when it died mid-write; call it under PATH's lock."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = temp_prefix(path)
    for entry in os.listdir(directory):
        if entry.startswith(prefix) and entry.endswith(TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, entry))


def ensure_parents(path, mode):
    """Create the missing parent directories of PATH with MODE (not subject to umask)."""
    parent = os.path.dirname(os.path.abspath(path))
    missing = []
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", directory) from None
            continue  # another run made it between our check and mkdir
        os.chmod(directory, mode)
