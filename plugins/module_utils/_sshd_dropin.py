# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An sshd drop-in that sshd always accepts: the logic of the sshd_dropin module.

A new content is checked alone (``sshd -t -f``) before it takes the drop-in's place (_file_set's atomic
write), then with the whole configuration (``sshd -t``); a configuration sshd refuses gets the previous drop-in
back (or loses the new one) and fails with sshd's own words, so sshd is never reloaded into a broken state.
``run(argv) -> (rc, stdout, stderr)`` runs sshd and systemctl. Nothing here knows Ansible.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _file_set, _fs

# sshd_config(5): a keyword is letters only; a value is one word here (no space, quote, comment or escape).
KEYWORD = re.compile(r"[A-Za-z]+")
# Keywords that would change what the lines after them apply to, or read another file: never written by settings.
SCOPING = {"match", "include"}
WORD = re.compile(r"[^\s\"'#\\,]+")
MODE = 0o644


class DropinError(Exception):
    """The drop-in could not be put in place; the message names it and says what sshd said."""


@dataclass
class DropinResult:
    changed: bool = False
    supported: bool = True
    reloaded: bool = False
    diffs: list = field(default_factory=list)


def render(settings, comment=""):
    """The drop-in's text: COMMENT as '# ' lines, then 'Keyword value' per SETTINGS item (a list joined by ',').

    Every keyword and value is checked first, so no value can add a line or a second option.
    """
    if not settings:
        raise DropinError("settings: give at least one keyword")
    lines = [f"# {line}".rstrip() for line in str(comment).splitlines()]
    for keyword, value in settings.items():
        if not isinstance(keyword, str) or not KEYWORD.fullmatch(keyword):
            raise DropinError(f"settings: {keyword!r} is not an sshd keyword (letters only)")
        if keyword.lower() in SCOPING:
            raise DropinError(f"settings: {keyword} is not allowed (it would scope or include other lines)")
        words = list(value) if isinstance(value, (list, tuple)) else [value]
        if not words:
            raise DropinError(f"settings: {keyword} needs a value (a word, a number or a list of words)")
        for word in words:
            if isinstance(word, bool) or not isinstance(word, (str, int)) or not WORD.fullmatch(str(word)):
                raise DropinError(f"settings: {keyword} value {word!r} must be one word: no space, quote, comma, "
                                  "'#' or backslash")
        lines.append(f"{keyword} {','.join(str(word) for word in words)}")
    return "\n".join(lines) + "\n"


def known_keywords(run, sshd):
    """The keywords `sshd -T` prints (lowercase), or None when sshd cannot print its configuration."""
    rc, out, _err = run([sshd, "-T"])
    if rc != 0:
        return None
    return {line.split()[0].lower() for line in out.splitlines() if line.strip()}


def _said(rc, out, err):
    return (err or out or "").strip() or f"exit {rc}"


def _remove(path, check_mode):
    if not os.path.lexists(path):
        return False
    if os.path.isdir(path):
        raise DropinError(f"{path} is a directory: give the drop-in's file path")
    if not check_mode:
        os.unlink(path)
        _fs.fsync_dir(os.path.dirname(os.path.abspath(path)))
    return True


def _write(path, content, run, sshd, check_mode, want_diff, result, ids):
    """Put CONTENT in place as sshd accepts it; True when the content (not only its mode or owner) changed."""
    before = _fs.read_bytes(path)
    entry = {"path": path, "content": content, "mode": MODE, "uid": ids[0], "gid": ids[1],
             "validate": f"{shlex.quote(sshd)} -t -f %s"}
    try:
        changed, result.diffs = _file_set.apply([], [entry], check_mode=check_mode, want_diff=want_diff, run=run)
    except _file_set.FileSetError as exc:
        raise DropinError(f"sshd rejected the configuration, so it was not applied and sshd was not reloaded: "
                          f"{exc}") from None
    result.changed = bool(changed)
    if check_mode:
        return result.changed and before != content
    rc, out, err = run([sshd, "-t"])
    if before == content or not result.changed:
        # Unchanged, yet checked: a refused drop-in that an interrupted run left in place must not pass as ok (sshd
        # keeps running on its old configuration, and would not start at the next boot).
        if rc != 0:
            raise DropinError(f"sshd refuses its configuration as it is, with {path} unchanged; fix it before sshd "
                              f"is restarted. sshd said: {_said(rc, out, err)}")
        return False
    if rc != 0:
        if before is None:
            _remove(path, False)
        else:
            _file_set.apply([], [dict(entry, content=before, validate=None)], run=run)
        kept = "the previous drop-in is back" if before is not None else "the new drop-in was removed"
        raise DropinError(f"sshd rejected the configuration with {path} in place, so it was not applied and sshd "
                          f"was not reloaded ({kept}). sshd said: {_said(rc, out, err)}")
    return True


def apply(path, run, content=None, state="present", sshd="/usr/sbin/sshd", service=None, require_keywords=(),
          check_mode=False, want_diff=False, ids=(0, 0)):
    """Put CONTENT (bytes) at PATH (mode 0644, owned by IDS: root) only as sshd accepts it, or remove PATH.

    REQUIRE_KEYWORDS: when `sshd -T` does not know one of them (an older OpenSSH), nothing changes and the
    result says ``supported`` False. SERVICE: sshd's unit, reloaded when the drop-in's content changed. Returns a
    DropinResult.
    """
    result = DropinResult()
    if not os.path.isabs(path):
        raise DropinError(f"path {path!r} must be absolute (sshd reads its drop-ins from /etc/ssh/sshd_config.d)")
    if state == "absent":
        result.changed = rewritten = _remove(path, check_mode)
    else:
        if require_keywords:
            known = known_keywords(run, sshd)
            if known is None or any(word.lower() not in known for word in require_keywords):
                result.supported = False
                return result
        rewritten = _write(path, content, run, sshd, check_mode, want_diff, result, ids)
    # A mended mode or owner changes nothing sshd reads: only a new or removed content is reloaded.
    if rewritten and service and not check_mode:
        rc, out, err = run(["systemctl", "reload", service])
        if rc != 0:
            raise DropinError(f"{path} is in place, but systemctl reload {service} failed: {_said(rc, out, err)}")
        result.reloaded = True
    return result
