# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""file_set and SELinux: a written file or a new directory gets the context the policy names for its path.

This machine (Debian, like Ubuntu) has no SELinux, so the real libselinux binding says "off" and nothing is
relabelled. An EL 9 host with SELinux enforcing is stood in for by a libselinux that answers from a policy
table: the calls and the decisions are file_set's, only the kernel's answers are made up.
"""

from __future__ import annotations

import errno
import os

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _file_set
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import (
    FileSetError,
    apply,
    ensure_directory,
    restore_selinux_context,
)


class EnforcingLibselinux:
    """libselinux's calls as file_set makes them, on a host whose policy is POLICY ({path: context})."""

    def __init__(self, policy, inherited="system_u:object_r:etc_t:s0", refuse=False):
        self.policy, self.inherited, self.refuse = policy, inherited, refuse
        self.contexts, self.set_calls = {}, []

    def is_selinux_enabled(self):
        return 1

    def matchpathcon(self, path, mode):
        if path not in self.policy:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        return [0, self.policy[path]]

    def lgetfilecon_raw(self, path):
        return [0, self.contexts.get(path, self.inherited)]

    def lsetfilecon(self, path, context):
        if self.refuse:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        self.set_calls.append((path, context))
        self.contexts[path] = context
        return 0


class DisabledLibselinux(EnforcingLibselinux):
    """libselinux on a host where SELinux is off (the library is there, the kernel has no policy loaded)."""

    def is_selinux_enabled(self):
        return 0


UNIT = "system_u:object_r:systemd_unit_file_t:s0"


def entry(path, content=b"x\n", mode=0o644, state="present"):
    return {"path": str(path), "content": content, "mode": mode, "uid": None, "gid": None, "state": state}


def test_debian_and_ubuntu_have_selinux_off_and_nothing_is_relabelled(tmp_path):
    # The real binding on this Debian machine, as the module loads it: off, or no libselinux at all.
    target = tmp_path / "unit"
    target.write_text("x")
    assert _file_set._selinux is None or _file_set._selinux.is_selinux_enabled() == 0
    assert restore_selinux_context(str(target)) is False


def test_a_host_with_selinux_disabled_is_not_touched(tmp_path):
    target = tmp_path / "unit"
    target.write_text("x")
    library = DisabledLibselinux({str(target): UNIT})
    assert restore_selinux_context(str(target), library) is False
    assert library.set_calls == []


def test_el9_enforcing_gives_a_file_the_policys_context(tmp_path):
    target = tmp_path / "revtunnel@.service"
    target.write_text("x")
    library = EnforcingLibselinux({str(target): UNIT})
    assert restore_selinux_context(str(target), library) is True
    assert library.set_calls == [(str(target), UNIT)]
    # Right already: nothing more to set.
    assert restore_selinux_context(str(target), library) is False
    assert len(library.set_calls) == 1


def test_el9_a_path_the_policy_names_no_context_for_keeps_its_own(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x")
    library = EnforcingLibselinux({})
    assert restore_selinux_context(str(target), library) is False
    assert library.set_calls == []


def test_el9_a_context_that_cannot_be_set_fails_naming_the_path(tmp_path):
    target = tmp_path / "unit"
    target.write_text("x")
    with pytest.raises(FileSetError, match=rf"^{target}: cannot give it the SELinux context {UNIT}: "):
        restore_selinux_context(str(target), EnforcingLibselinux({str(target): UNIT}, refuse=True))


def test_apply_relabels_what_it_writes_and_makes_not_what_it_mends_or_removes(tmp_path, monkeypatch):
    lib, kept, mended, gone = tmp_path / "lib", tmp_path / "kept", tmp_path / "mended", tmp_path / "gone"
    for path in (kept, mended, gone):
        path.write_bytes(b"same\n")
        os.chmod(path, 0o644)
    policy = {str(p): UNIT for p in (lib, lib / "new", kept, mended, gone, tmp_path / "changed")}
    library = EnforcingLibselinux(policy)
    monkeypatch.setattr(_file_set, "_selinux", library)
    (tmp_path / "changed").write_bytes(b"old\n")
    files = [entry(lib / "new"), entry(kept, b"same\n"), entry(mended, b"same\n", mode=0o600),
             entry(gone, state="absent"), entry(tmp_path / "changed", b"new\n")]
    changed = apply([{"path": str(lib), "mode": 0o755, "uid": None, "gid": None}], files)[0]
    assert changed == [str(lib), str(lib / "new"), str(mended), str(gone), str(tmp_path / "changed")]
    assert [path for path, _context in library.set_calls] == [str(lib), str(lib / "new"), str(tmp_path / "changed")]


def test_check_mode_relabels_nothing(tmp_path, monkeypatch):
    library = EnforcingLibselinux({str(tmp_path / "d"): UNIT, str(tmp_path / "f"): UNIT})
    monkeypatch.setattr(_file_set, "_selinux", library)
    assert ensure_directory(str(tmp_path / "d"), check_mode=True) is True
    apply([], [entry(tmp_path / "f")], check_mode=True)
    assert library.set_calls == []
