# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""file_set's logic on a real file system: contents, modes, removal, check mode, what is never replaced."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _file_set
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import FileSetError, apply, parse_mode


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def entry(path, content=b"x\n", mode=0o644, state="present"):
    return {"path": str(path), "content": content, "mode": mode, "uid": None, "gid": None, "state": state}


def test_a_set_is_written_once_then_nothing_changes(tmp_path):
    lib = tmp_path / "lib"
    files = [entry(lib / "a.py", b"print(1)\n"), entry(lib / "run", b"#!/bin/sh\n", 0o755)]
    directories = [{"path": str(lib), "mode": 0o750, "uid": None, "gid": None}]
    changed = apply(directories, files)[0]
    assert changed == [str(lib), str(lib / "a.py"), str(lib / "run")]
    assert (lib / "a.py").read_bytes() == b"print(1)\n" and mode_of(lib / "run") == 0o755 and mode_of(lib) == 0o750
    assert apply(directories, files) == ([], [])


def test_only_the_file_that_differs_is_rewritten(tmp_path):
    files = [entry(tmp_path / "a", b"one\n"), entry(tmp_path / "b", b"two\n")]
    apply([], files)
    inode_a = os.stat(tmp_path / "a").st_ino
    files[1]["content"] = b"three\n"
    changed, diffs = apply([], files, want_diff=True)
    assert changed == [str(tmp_path / "b")] and os.stat(tmp_path / "a").st_ino == inode_a
    assert diffs == [{"before": "two\n", "after": "three\n", "before_header": str(tmp_path / "b"),
                      "after_header": str(tmp_path / "b")}]


def test_a_rewritten_file_is_a_new_inode_with_its_mode_before_it_gets_the_name(tmp_path, monkeypatch):
    target = tmp_path / "unit"
    target.write_bytes(b"old\n")
    os.chmod(target, 0o600)
    seen = {}
    real_rename = os.rename

    def spy(src, dst):
        seen["mode"] = mode_of(src)
        real_rename(src, dst)

    monkeypatch.setattr(_file_set.os, "rename", spy)
    apply([], [entry(target, b"new\n", 0o644)])
    assert seen["mode"] == 0o644 and target.read_bytes() == b"new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["unit"]  # no temporary file left


def test_a_wrong_mode_alone_is_mended_in_place(tmp_path):
    target = tmp_path / "script"
    apply([], [entry(target, b"#!/bin/sh\n", 0o755)])
    os.chmod(target, 0o777)  # noqa: S103 - the wrong mode the test mends
    inode = os.stat(target).st_ino
    assert apply([], [entry(target, b"#!/bin/sh\n", 0o755)])[0] == [str(target)]
    assert mode_of(target) == 0o755 and os.stat(target).st_ino == inode


def test_check_mode_reports_and_changes_nothing(tmp_path):
    lib = tmp_path / "lib"
    changed = apply([{"path": str(lib), "mode": None, "uid": None, "gid": None}],
                    [entry(lib / "a"), entry(tmp_path / "gone", state="absent")], check_mode=True)[0]
    assert changed == [str(lib), str(lib / "a")] and not lib.exists()
    (tmp_path / "gone").write_text("stale")
    assert apply([], [entry(tmp_path / "gone", state="absent")], check_mode=True)[0] == [str(tmp_path / "gone")]
    assert (tmp_path / "gone").exists()


def test_absent_removes_a_file_and_is_quiet_when_it_is_gone(tmp_path):
    (tmp_path / "old.timer").write_text("x")
    assert apply([], [entry(tmp_path / "old.timer", state="absent")])[0] == [str(tmp_path / "old.timer")]
    assert not (tmp_path / "old.timer").exists()
    assert apply([], [entry(tmp_path / "old.timer", state="absent")])[0] == []


def test_a_link_or_a_directory_is_never_replaced(tmp_path):
    (tmp_path / "real").write_text("keep")
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(FileSetError, match="link"):
        apply([], [entry(tmp_path / "link")])
    (tmp_path / "dir").mkdir()
    with pytest.raises(FileSetError, match="not a regular file"):
        apply([], [entry(tmp_path / "dir")])
    with pytest.raises(FileSetError, match="is a directory"):
        apply([], [entry(tmp_path / "dir", state="absent")])
    with pytest.raises(FileSetError, match="not a directory"):
        apply([{"path": str(tmp_path / "real"), "mode": None, "uid": None, "gid": None}], [])
    assert (tmp_path / "real").read_text() == "keep"


def test_a_missing_directory_is_named_and_check_mode_leaves_it_to_earlier_tasks(tmp_path):
    with pytest.raises(FileSetError, match="list it in directories"):
        apply([], [entry(tmp_path / "nowhere" / "file")])
    # in check mode the task that would have made it did not run
    assert apply([], [entry(tmp_path / "nowhere" / "file")], check_mode=True)[0] == [str(tmp_path / "nowhere" / "file")]


def test_a_path_listed_twice_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(FileSetError, match="listed twice"):
        apply([], [entry(tmp_path / "a", b"1"), entry(tmp_path / "b"), entry(tmp_path / "." / "a", b"2")])
    with pytest.raises(FileSetError, match="listed twice"):
        apply([{"path": str(tmp_path / "d"), "mode": None, "uid": None, "gid": None}], [entry(tmp_path / "d")])
    assert list(tmp_path.iterdir()) == []


def test_an_unset_owner_keeps_the_owner_of_the_file_it_replaces(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"old\n")
    chowned = []
    monkeypatch.setattr(_file_set.os, "fchown", lambda fd, uid, gid: chowned.append((uid, gid)))
    apply([], [entry(target, b"new\n")])
    info = os.stat(tmp_path)
    assert chowned == [(os.stat(target).st_uid, os.stat(target).st_gid)] == [(info.st_uid, info.st_gid)]


def test_absent_removes_a_link_and_not_what_it_points_to(tmp_path):
    (tmp_path / "real").write_text("keep")
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert apply([], [entry(tmp_path / "link", state="absent")])[0] == [str(tmp_path / "link")]
    assert not os.path.lexists(tmp_path / "link") and (tmp_path / "real").read_text() == "keep"


def test_a_directory_gets_its_missing_parents(tmp_path):
    deep = tmp_path / "var" / "lib" / "node-exporter"
    assert apply([{"path": str(deep), "mode": 0o750, "uid": None, "gid": None}], [])[0] == [str(deep)]
    assert mode_of(deep) == 0o750 and mode_of(tmp_path / "var" / "lib") == 0o755


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "conf"
    target.write_bytes(b"old\n")

    def broken(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_file_set.os, "fsync", broken)
    with pytest.raises(OSError):
        apply([], [entry(target, b"new\n")])
    assert target.read_bytes() == b"old\n" and [p.name for p in tmp_path.iterdir()] == ["conf"]


@pytest.mark.parametrize("text, expected", [("0644", 0o644), ("755", 0o755), ("0600", 0o600), (None, None)])
def test_modes_are_octal_strings(text, expected):
    assert parse_mode("/x", text) == expected


@pytest.mark.parametrize("text", ["644a", "0o644", "99999", "rw-r--r--", "1"])
def test_a_bad_mode_names_the_path(text):
    with pytest.raises(FileSetError, match="/etc/x: mode"):
        parse_mode("/etc/x", text)


def shell(command):
    proc = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)  # noqa: S602
    return proc.returncode, proc.stdout, proc.stderr


def test_a_refused_content_leaves_the_whole_set_as_it_was(tmp_path):
    first, second = tmp_path / "a.conf", tmp_path / "b.conf"
    apply([], [entry(first, b"ok\n"), entry(second, b"ok\n")])
    files = [entry(first, b"new\n"), dict(entry(second, b"bad\n"), validate="grep -qv bad %s")]
    with pytest.raises(FileSetError, match=r"b.conf: the new content was not written because grep refused it"):
        apply([], files, run=shell)
    assert first.read_bytes() == b"ok\n" and second.read_bytes() == b"ok\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.conf", "b.conf"]
    files[1]["content"] = b"good\n"
    assert apply([], files, run=shell)[0] == [str(first), str(second)]
    assert second.read_bytes() == b"good\n"


def test_validate_runs_only_on_a_changed_content_and_sees_the_new_one(tmp_path):
    seen = []

    def run(command):
        with open(command.split()[-1].strip("'"), "rb") as handle:
            seen.append(handle.read())
        return 0, "", ""

    files = [dict(entry(tmp_path / "c", b"v1\n"), validate="check %s")]
    apply([], files, run=run)
    apply([], files, run=run)
    assert seen == [b"v1\n"]
    with pytest.raises(FileSetError, match="must hold %s"):
        apply([], [dict(entry(tmp_path / "c", b"v2\n"), validate="check")], run=run)


def test_a_link_to_a_directory_counts_as_the_directory_and_a_link_to_nothing_is_named(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    os.symlink(tmp_path / "real", tmp_path / "conf")
    assert apply([{"path": str(tmp_path / "conf"), "mode": 0o755, "uid": None, "gid": None}], [])[0] == [
        str(tmp_path / "conf")]
    assert mode_of(tmp_path / "real") == 0o755 and os.path.islink(tmp_path / "conf")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(FileSetError, match="link to nothing"):
        apply([{"path": str(tmp_path / "dangling"), "mode": None, "uid": None, "gid": None}], [])
