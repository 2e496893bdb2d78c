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

import base64
import binascii
import grp
import os
import pwd
import re
import shlex
import stat

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs

try:
    from ansible.module_utils.compat import selinux as _selinux
except ImportError:  # no libselinux on this host, so no SELinux either
    _selinux = None

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


def account_ids(owner, group, check_mode=False, where=""):
    """OWNER and GROUP names as (uid, gid), None for a name not given.

    In check mode a name that does not exist yet is None: an earlier task that check mode did not run makes it.
    """
    found = []
    for name, lookup, kind in ((owner, lambda n: pwd.getpwnam(n).pw_uid, "account"),
                               (group, lambda n: grp.getgrnam(n).gr_gid, "group")):
        try:
            found.append(None if name is None else lookup(name))
        except KeyError:
            if not check_mode:
                raise FileSetError(f"{where}{kind} {name!r} does not exist on this host") from None
            found.append(None)
    return found[0], found[1]


def _attributes_differ(info, mode, uid, gid):
    return ((mode is not None and stat.S_IMODE(info.st_mode) != mode)
            or (uid is not None and info.st_uid != uid) or (gid is not None and info.st_gid != gid))


def _fix_attributes(path, mode, uid, gid):
    if uid is not None or gid is not None:
        # Files are regular (checked with lstat); a directory may be reached through a link, like chmod does.
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        os.chmod(path, mode)


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

    Missing parents are made too, like `mkdir -p`: mode 0755, owned by whoever runs the module. A link to a
    directory counts as that directory, as with ansible.builtin.file; a link to nothing is an error.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise FileSetError(f"{path} is a link to nothing: remove it or point it at a directory") from None
        if not check_mode:
            parent = os.path.dirname(path.rstrip("/"))
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            os.mkdir(path, 0o700)
            _fix_attributes(path, 0o755 if mode is None else mode, uid, gid)
            restore_selinux_context(path)
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


def _check_unique(directories, files):
    seen = set()
    for entry in [*directories, *files]:
        path = os.path.normpath(entry["path"])
        if path in seen:
            raise FileSetError(f"{entry['path']} is listed twice: give each directory and file once")
        seen.add(path)


def _plan(entry, check_mode):
    """(action, content before) for one file entry: 'write', 'mend', 'remove' or None."""
    path, state = entry["path"], entry.get("state", "present")
    if state == "absent":
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None, None
        if stat.S_ISDIR(info.st_mode):
            raise FileSetError(f"{path} is a directory; state absent removes files and links only")
        return "remove", _fs.read_bytes(path) if stat.S_ISREG(info.st_mode) else None
    info = _state_of(path)
    content = entry.get("content")
    if content is None:
        raise FileSetError(f"{path}: a file that is present needs a content")
    before = _fs.read_bytes(path) if info is not None else None
    if before != content:
        # In check mode an earlier task that would make the directory did not run: report the write.
        if not check_mode and not os.path.isdir(os.path.dirname(path) or "."):
            raise FileSetError(f"{path}: its directory does not exist; list it in directories first")
        return "write", before
    if _attributes_differ(info, entry.get("mode"), entry.get("uid"), entry.get("gid")):
        return "mend", before
    return None, before


def _stage_entry(entry):
    """Stage ENTRY's new content; an owner or group left unset keeps the one of the file it replaces."""
    uid, gid = entry.get("uid"), entry.get("gid")
    if uid is None or gid is None:
        try:
            info = os.lstat(entry["path"])
            uid = info.st_uid if uid is None else uid
            gid = info.st_gid if gid is None else gid
        except FileNotFoundError:
            pass
    mode = entry.get("mode")
    return _fs.stage(entry["path"], entry["content"], 0o644 if mode is None else mode, uid, gid)


def apply(directories, files, check_mode=False, want_diff=False, run=None):
    """Directories first, then files; (changed paths in the order given, diffs of the changed files).

    DIRECTORIES: dicts with path, mode (int or None), uid, gid. FILES: the same plus state, content (bytes)
    and optionally validate, a command with %s run by RUN(command) -> (rc, stdout, stderr) on the new content.
    Every entry is checked and every new content staged and validated before any file takes its new
    content, so a refused file leaves the whole set as it was (directories made for it stay).
    """
    _check_unique(directories, files)
    changed, diffs = [], []
    for entry in directories:
        if ensure_directory(entry["path"], entry.get("mode"), entry.get("uid"), entry.get("gid"), check_mode):
            changed.append(entry["path"])
    plans = [(entry, *_plan(entry, check_mode)) for entry in files]
    if not check_mode:
        staged = {}
        try:
            for entry, action, _before in plans:
                if action == "write":
                    staged[entry["path"]] = _stage_entry(entry)
                    if entry.get("validate"):
                        _validate(entry, staged[entry["path"]], run)
            for entry, action, _before in plans:
                path = entry["path"]
                if action == "write":
                    os.rename(staged.pop(path), path)
                elif action == "mend":
                    _fix_attributes(path, entry.get("mode"), entry.get("uid"), entry.get("gid"))
                elif action == "remove":
                    os.unlink(path)
            # Once every file holds its new content, so a refusal here cannot leave the set half written.
            for entry, action, _before in plans:
                if action == "write":
                    restore_selinux_context(entry["path"])
        finally:
            _fs.discard(staged.values())
        touched = {os.path.dirname(e["path"]) or "." for e, action, _b in plans if action in ("write", "remove")}
        for directory in sorted(touched):
            _fs.fsync_dir(directory)
    for entry, action, before in plans:
        if action:
            changed.append(entry["path"])
            after = entry.get("content") if entry.get("state", "present") == "present" else None
            if want_diff and before != after:
                diff = _diff(entry["path"], before, after)
                if diff:
                    diffs.append(diff)
    return changed, diffs


# The argument specs of a directory and a file entry, for every module that takes file entries.
DIRECTORY_OPTIONS = dict(
    path=dict(type="path", required=True),
    mode=dict(type="str"),
    owner=dict(type="str"),
    group=dict(type="str"),
)
FILE_OPTIONS = dict(
    path=dict(type="path", required=True),
    content=dict(type="str"),
    content_base64=dict(type="str"),
    mode=dict(type="str", default="0644"),
    owner=dict(type="str"),
    group=dict(type="str"),
    validate=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def _content(entry):
    if entry["content"] is not None and entry["content_base64"] is not None:
        raise FileSetError(f"{entry['path']}: give content or content_base64, not both")
    if entry["content_base64"] is not None:
        try:
            return base64.b64decode(entry["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise FileSetError(f"{entry['path']}: content_base64 is not valid base64") from None
    if entry["content"] is None:
        raise FileSetError(f"{entry['path']}: a file that is present needs a content")
    return entry["content"].encode("utf-8")


def prepare_entries(entries, check_mode, content):
    """Entries of the module's arguments as apply() takes them: ids for names, modes as ints, contents as bytes."""
    prepared = []
    for entry in entries:
        if not entry["path"].startswith("/"):
            raise FileSetError(f"{entry['path']}: give an absolute path")
        uid, gid = account_ids(entry["owner"], entry["group"], check_mode, where=f"{entry['path']}: ")
        item = {"path": entry["path"], "mode": parse_mode(entry["path"], entry["mode"]), "uid": uid, "gid": gid}
        if content:
            item["state"] = entry["state"]
            item["validate"] = entry["validate"]
            if entry["state"] == "present":
                item["content"] = _content(entry)
        prepared.append(item)
    return prepared


def restore_selinux_context(path, selinux=None):
    """Give PATH the SELinux context the policy names for it, when SELinux is on; True when that changed it.

    A file renamed into place keeps the context its temporary file took from the directory, and a new directory
    takes its parent's: not always what the policy names for that path, which is what restorecon mends.
    SELINUX is libselinux (is_selinux_enabled, matchpathcon, lgetfilecon_raw, lsetfilecon), by default through
    ansible-core's binding, the one AnsibleModule uses; None where the host has no libselinux.
    """
    selinux = _selinux if selinux is None else selinux
    if selinux is None or selinux.is_selinux_enabled() != 1:
        return False
    try:
        wanted = selinux.matchpathcon(path, os.lstat(path).st_mode)[1]
    except OSError:
        # The policy names no context for this path: the one it has stays.
        return False
    if selinux.lgetfilecon_raw(path)[1] == wanted:
        return False
    try:
        selinux.lsetfilecon(path, wanted)
    except OSError as exc:
        raise FileSetError(f"{path}: cannot give it the SELinux context {wanted}: {exc.strerror}") from None
    return True
