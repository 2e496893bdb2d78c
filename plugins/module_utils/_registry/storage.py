# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the registry lives: its lock, and its atomic write with the previous version kept as ``.bak``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.document import RegistryError

FILE_MODE = 0o640
DIR_MODE = 0o750
LOCK_TIMEOUT = 60.0


def write(path, data, previous=None):
    """Keep ``previous`` bytes as <path>.bak, then replace the registry atomically; the .bak path or None.

    Both files keep the owner of the registry they replace (best effort).
    """
    like = None
    with contextlib.suppress(FileNotFoundError):
        like = os.stat(path)
    owner = (like.st_uid, like.st_gid) if like is not None else (None, None)
    backup_file = None
    if previous is not None:
        backup_file = path + ".bak"
        _fs.replace(backup_file, previous, FILE_MODE, *owner, sync_dir=False, best_effort_owner=True)
    _fs.replace(path, data, FILE_MODE, *owner, best_effort_owner=True)
    return backup_file


@contextlib.contextmanager
def lock(path, timeout=LOCK_TIMEOUT):
    """Hold an exclusive flock on <path>.lock; the lock file is never removed."""
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RegistryError(
                        f"another run has held the registry lock {lock_path} for over {timeout:.0f} s: "
                        f"wait for it to finish, or find the process holding it with: fuser -v {lock_path}"
                    ) from None
                time.sleep(0.02)
        yield lock_path
    finally:
        # closing the descriptor releases the flock
        os.close(fd)
