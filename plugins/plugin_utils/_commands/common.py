# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the hub's commands share: reading the registry with an error that says what to do."""

from __future__ import annotations

import errno
import grp
import os
import sys

from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import output


def registry_problem(path, exc):
    """One line that says why PATH cannot be read and what to do about it."""
    if isinstance(exc, FileNotFoundError):
        return (f"there is no registry at {path}: run this on the hub, and give --registry when the hub's "
                "revtunnel_registry_path is not the default")
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EACCES:
        try:
            info = os.stat(path)
            group = grp.getgrgid(info.st_gid).gr_name
        except (OSError, KeyError):
            group = "root"
        return (f"permission denied reading {path}: run it as root (sudo), or as a member of the group "
                f"{group!r} that may read the registry")
    return f"cannot read the registry {path}: {exc}"


def read_registry(path, prog):
    """The registry's spokes, or None after printing why they cannot be read (the caller exits 2)."""
    try:
        document_ = document.read(path)
    except (OSError, ValueError) as exc:
        output.say(f"{prog}: {registry_problem(path, exc)}", sys.stderr)
        return None
    if document_ is None:
        output.say(f"{prog}: {registry_problem(path, FileNotFoundError(path))}", sys.stderr)
        return None
    return document_.spokes
