# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Put a set of small files in place in one call: the logic of the file_set module.

Each file is compared byte for byte with what it should hold; a file that differs is written to a temporary
file in its own directory, given its mode and owner there, fsynced and renamed over the old one, so a reader
sees the old file or the new one, never a part or a wrong mode. Attributes alone are mended in place.
Nothing here knows Ansible: the module resolves names to ids and reports.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import stat
import tempfile

_MODE = re.compile(r"^0?[0-7]{3}$")
# Diffs of bigger files are left out; the change is still reported.
DIFF_LIMIT = 128 * 1024


class FileSetError(Exception):
    """An entry that cannot be put in place; the message names its path."""


def parse_mode(path, mode):
    """The mode of PATH as an int, from an octal string such as '0644'; None stays None."""
    if mode is None:
        return None
    text = str(mode)
    if not _MODE.match(text):
        raise FileSetError(f"{path}: mode {text!r} is not an octal mode such as '0644'")
    return int(text, 8)


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _attributes_differ(info, mode, uid, gid):
    return ((mode is not None and stat.S_IMODE(info.st_mode) != mode)
            or (uid is not None and info.st_uid != uid) or (gid is not None and info.st_gid != gid))


def _fix_attributes(path, mode, uid, gid):
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid, follow_symlinks=False)
    if mode is not None:
        os.chmod(path, mode)


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(path, data, mode, uid=None, gid=None):
    """A temporary file beside PATH holding DATA, with its mode and owner already set and synced; its path."""
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if uid is not None or gid is not None:
                os.fchown(handle.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(handle.fileno(), 0o644 if mode is None else mode)
            os.fsync(handle.fileno())
    except BaseException:
        _discard([temporary])
        raise
    return temporary


def _discard(temporaries):
    for temporary in list(temporaries):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _diff(path, before, after):
    if any(len(side or b"") > DIFF_LIMIT for side in (before, after)):
        return None
    try:
        return {"before": (before or b"").decode("utf-8"), "after": (after or b"").decode("utf-8"),
                "before_header": path if before is not None else "(absent)",
                "after_header": path if after is not None else "(absent)"}
    except UnicodeDecodeError:
        return None


def ensure_directory(path, mode=None, uid=None, gid=None, check_mode=False):
    """Make PATH a directory (mode 0755 when MODE is None and it is new); True when something changed.

    Missing parents are made too, like `mkdir -p`: mode 0755, owned by whoever runs the module.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not check_mode:
            parent = os.path.dirname(path.rstrip("/"))
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            os.mkdir(path, 0o700)
            _fix_attributes(path, 0o755 if mode is None else mode, uid, gid)
        return True
    if not stat.S_ISDIR(info.st_mode):
        raise FileSetError(f"{path} exists and is not a directory")
    if not _attributes_differ(info, mode, uid, gid):
        return False
    if not check_mode:
        _fix_attributes(path, mode, uid, gid)
    return True


def _state_of(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise FileSetError(f"{path} exists and is not a regular file (a link or a directory is never replaced)")
    return info


def _validate(entry, temporary, run):
    command = entry["validate"]
    if "%s" not in command:
        raise FileSetError(f"{entry['path']}: validate must hold %s, the place of the file to check")
    rc, out, err = run(command.replace("%s", shlex.quote(temporary)))
    if rc != 0:
        said = (err or out or "").strip()
        raise FileSetError(f"{entry['path']}: the new content was not written because {command.split()[0]} "
                           f"refused it (exit {rc}): {said}")


def apply(directories, files, check_mode=False, want_diff=False, run=None):
    """Directories first, then files; (changed paths in the order given, diffs of the changed files).

    DIRECTORIES: dicts with path, mode (int or None), uid, gid. FILES: the same plus state, content (bytes)
    and optionally validate, a command with %s run by RUN(command) -> (rc, stdout, stderr) on the new content.
    Every new content is staged and validated before any file takes its new content, so a refused file
    leaves the whole set as it was (directories made for it stay).
    """
    changed, diffs = [], []
    for entry in directories:
        if ensure_directory(entry["path"], entry.get("mode"), entry.get("uid"), entry.get("gid"), check_mode):
            changed.append(entry["path"])
    plans = []
    for entry in files:
        path, state = entry["path"], entry.get("state", "present")
        info = _state_of(path)
        if state == "absent":
            plans.append((entry, "remove" if info else None, _read(path) if info else None, None))
            continue
        content = entry.get("content")
        if content is None:
            raise FileSetError(f"{path}: a file that is present needs a content")
        before = _read(path) if info is not None else None
        if before != content:
            if not os.path.isdir(os.path.dirname(path) or ".") and not check_mode:
                raise FileSetError(f"{path}: its directory does not exist; list it in directories first")
            action = "write"
        elif _attributes_differ(info, entry.get("mode"), entry.get("uid"), entry.get("gid")):
            action = "mend"
        else:
            action = None
        plans.append((entry, action, before, content))
    if not check_mode:
        staged = {}
        try:
            for entry, action, _before, content in plans:
                if action == "write":
                    staged[entry["path"]] = _stage(entry["path"], content, entry.get("mode"), entry.get("uid"),
                                                   entry.get("gid"))
                    if entry.get("validate"):
                        _validate(entry, staged[entry["path"]], run)
        except BaseException:
            _discard(staged.values())
            raise
        try:
            for entry, action, _before, _content in plans:
                path = entry["path"]
                if action == "write":
                    os.rename(staged[path], path)
                    del staged[path]
                elif action == "mend":
                    _fix_attributes(path, entry.get("mode"), entry.get("uid"), entry.get("gid"))
                elif action == "remove":
                    os.unlink(path)
        finally:
            _discard(staged.values())
        touched = {os.path.dirname(e["path"]) or "." for e, action, _b, _c in plans if action in ("write", "remove")}
        for directory in sorted(touched):
            _fsync_dir(directory)
    for entry, action, before, content in plans:
        if action:
            changed.append(entry["path"])
            if want_diff and before != content:
                diff = _diff(entry["path"], before, content)
                if diff:
                    diffs.append(diff)
    return changed, diffs
