# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the file_set module file the way Ansible does: a subprocess fed JSON args."""

from __future__ import annotations

import functools
import grp
import os
import pwd

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
MODULE_PATH = os.path.join(REPO_ROOT, "plugins", "modules", "file_set.py")


@pytest.fixture
def run_module(module_runner):
    """Return a function that runs the module with args and gives (exit code, parsed JSON)."""
    return functools.partial(module_runner, MODULE_PATH)


def test_apply_then_nothing_changes_and_check_mode_agrees(tmp_path, run_module):
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    args = {"directories": [{"path": str(tmp_path / "etc"), "mode": "0755", "owner": me, "group": group}],
            "files": [{"path": str(tmp_path / "etc" / "a.conf"), "content": "a = 1\n", "owner": me, "group": group},
                      {"path": str(tmp_path / "etc" / "run"), "content": "#!/bin/sh\n", "mode": "0755"},
                      {"path": str(tmp_path / "stale"), "state": "absent"}]}
    rc, out = run_module(args, check_mode=True)
    assert rc == 0 and out["changed"] and not (tmp_path / "etc").exists()
    rc, out = run_module(args, diff=True)
    assert rc == 0 and out["changed_paths"] == [str(tmp_path / "etc"), str(tmp_path / "etc" / "a.conf"),
                                                str(tmp_path / "etc" / "run")]
    assert out["diff"][0]["after"] == "a = 1\n" and (tmp_path / "etc" / "run").stat().st_mode & 0o777 == 0o755
    rc, out = run_module(args, check_mode=True)
    assert rc == 0 and not out["changed"] and out["changed_paths"] == []
    rc, out = run_module(args)
    assert rc == 0 and not out["changed"]


def test_non_ascii_content_round_trips(tmp_path, run_module):
    args = {"files": [{"path": str(tmp_path / "motd"), "content": "Grüße — ok\n"}]}
    assert run_module(args)[1]["changed"]
    assert (tmp_path / "motd").read_text(encoding="utf-8") == "Grüße — ok\n"
    assert not run_module(args)[1]["changed"]


@pytest.mark.parametrize("entry, message", [
    ({"path": "relative/file", "content": "x"}, "relative/file: give an absolute path"),
    ({"path": "/tmp/x-file-set", "content": "x", "mode": "rwx"}, "/tmp/x-file-set: mode 'rwx'"),
    ({"path": "/tmp/x-file-set", "content": "x", "owner": "no-such-account-rt"}, "account 'no-such-account-rt'"),
    ({"path": "/tmp/x-file-set"}, "/tmp/x-file-set: a file that is present needs a content"),
])
def test_bad_entries_fail_before_anything_is_written_and_name_the_path(tmp_path, run_module, entry, message):
    first = {"path": str(tmp_path / "first"), "content": "x"}
    rc, out = run_module({"files": [first, entry]})
    assert rc != 0 and out["failed"] and message in out["msg"]
    assert not (tmp_path / "first").exists()


def test_an_unknown_account_is_not_an_error_in_check_mode(tmp_path, run_module):
    rc, out = run_module({"files": [{"path": str(tmp_path / "f"), "content": "x", "owner": "no-such-account-rt"}]},
                         check_mode=True)
    assert rc == 0 and out["changed"]
