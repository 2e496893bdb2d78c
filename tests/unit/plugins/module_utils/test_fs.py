# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one atomic writer: a reader never sees a part of a file, a failed write leaves nothing behind."""

from __future__ import annotations

import os
import threading

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs


def test_atomic_write_never_shows_a_partial_file(tmp_path):
    target = tmp_path / "revtunnel.prom"
    versions = {}
    for i in range(200):
        body = f"# version {i}\n" + "revtunnel_spokes{hub=\"h\"} %d\n" % i * (50 + (i * 37) % 400)
        versions[body] = i
    bodies = list(versions)
    _fs.replace(str(target), bodies[0].encode())
    done, seen, bad = threading.Event(), set(), []

    def reader():
        while not done.is_set():
            text = target.read_text()
            if text in versions:
                seen.add(versions[text])
            else:
                bad.append(len(text))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for body in bodies:
            _fs.replace(str(target), body.encode())
    finally:
        done.set()
        thread.join()
    assert bad == [], f"the reader saw {len(bad)} partial files"
    assert len(seen) > 1
    assert target.read_text() == bodies[-1]
    assert [p.name for p in tmp_path.iterdir()] == ["revtunnel.prom"]  # no temp file left behind
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_rename_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    _fs.replace(str(target), b"old")

    def failing(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_fs.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        _fs.replace(str(target), b"new")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["f"]


def test_an_owner_that_cannot_be_set_fails_unless_best_effort(tmp_path):
    target = tmp_path / "f"
    if os.geteuid() != 0:
        with pytest.raises(PermissionError):
            _fs.replace(str(target), b"x", uid=0, gid=0)
        _fs.replace(str(target), b"x", uid=0, gid=0, best_effort_owner=True)
    else:
        _fs.replace(str(target), b"x", uid=65534, gid=65534)
        assert (target.stat().st_uid, target.stat().st_gid) == (65534, 65534)
    assert target.read_bytes() == b"x"


def test_stale_temporary_files_of_a_dead_writer_are_removed(tmp_path):
    target = tmp_path / "ports.json"
    (tmp_path / ".ports.json.abc123.tmp").write_text("half")
    (tmp_path / ".other.abc.tmp").write_text("not ours")
    _fs.remove_stale_temps(str(target))
    assert sorted(os.listdir(tmp_path)) == [".other.abc.tmp"]
