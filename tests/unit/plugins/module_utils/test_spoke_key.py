# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The spoke's tunnel key, with the real ssh-keygen."""

from __future__ import annotations

import os
import subprocess

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_key import (
    SpokeKeyError,
    ensure_key,
    make_next,
    promote_next,
)


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_a_new_key_is_made_once_and_its_public_half_returned(tmp_path):
    key = tmp_path / "id_ed25519"
    first = ensure_key(str(key), run, comment="revtunnel pc-1")
    assert first.changed and first.created and first.public_key.startswith("ssh-ed25519 AAAA")
    assert (key.stat().st_mode & 0o777) == 0o600 and (tmp_path / "id_ed25519.pub").stat().st_mode & 0o777 == 0o644
    again = ensure_key(str(key), run, comment="revtunnel pc-1")
    assert not again.changed and not again.created and again.public_key == first.public_key


def test_check_mode_makes_nothing(tmp_path):
    key = tmp_path / "id_ed25519"
    result = ensure_key(str(key), run, check_mode=True)
    assert result.changed and result.public_key is None and not key.exists()


def test_loose_modes_and_a_wrong_public_file_are_mended(tmp_path):
    key = tmp_path / "id_ed25519"
    made = ensure_key(str(key), run)
    os.chmod(key, 0o644)
    (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAAnotthekey other\n")
    checked = ensure_key(str(key), run, check_mode=True)
    assert checked.changed and (key.stat().st_mode & 0o777) == 0o644
    mended = ensure_key(str(key), run)
    assert mended.changed and not mended.created and mended.public_key == made.public_key
    assert (key.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "id_ed25519.pub").read_text().split()[:2] == made.public_key.split()


def test_a_damaged_key_is_reported_not_replaced(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("not a key\n")
    with pytest.raises(SpokeKeyError, match="cannot read the private key"):
        ensure_key(str(key), run)
    assert key.read_text() == "not a key\n"


def test_the_key_directory_is_made_private_and_mended(tmp_path):
    home = tmp_path / "var" / "lib" / "revtunnel"
    key = home / "id_ed25519"
    check = ensure_key(str(key), run, check_mode=True, directory_mode=0o700)
    assert check.changed and not home.exists()
    first = ensure_key(str(key), run, comment="pc-1", directory_mode=0o700)
    assert first.created and (home.stat().st_mode & 0o7777) == 0o700
    assert not ensure_key(str(key), run, directory_mode=0o700).changed
    home.chmod(0o755)
    assert ensure_key(str(key), run, check_mode=True, directory_mode=0o700).changed
    assert (home.stat().st_mode & 0o7777) == 0o755
    mended = ensure_key(str(key), run, directory_mode=0o700)
    assert mended.changed and not mended.created and mended.public_key == first.public_key
    assert (home.stat().st_mode & 0o7777) == 0o700


def test_a_file_where_the_key_directory_belongs_is_named(tmp_path):
    (tmp_path / "home").write_text("not a directory")
    with pytest.raises(SpokeKeyError, match="is not a directory"):
        ensure_key(str(tmp_path / "home" / "id_ed25519"), run, directory_mode=0o700)


def test_a_rotation_makes_the_next_key_once_and_reuses_it_when_cut_short(tmp_path):
    key = tmp_path / "id_ed25519"
    current = ensure_key(str(key), run).public_key
    old, new = make_next(str(key), run, comment="pc-1")
    assert old.public_key == current and new.created and new.public_key != current
    assert (tmp_path / "id_ed25519.next").exists() and (tmp_path / "id_ed25519.next.pub").exists()
    # A run cut short after the hubs trusted the next key: the next run hands them the same one.
    again_old, again_new = make_next(str(key), run, comment="pc-1")
    assert again_old.public_key == current and again_new.public_key == new.public_key and not again_new.changed


def test_the_next_key_takes_the_current_ones_place_once(tmp_path):
    key = tmp_path / "id_ed25519"
    ensure_key(str(key), run)
    _old, new = make_next(str(key), run)
    checked = promote_next(str(key), run, check_mode=True)
    assert checked.changed and checked.public_key == new.public_key and (tmp_path / "id_ed25519.next").exists()
    promoted = promote_next(str(key), run)
    assert promoted.changed and promoted.public_key == new.public_key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["id_ed25519", "id_ed25519.pub"]
    assert (tmp_path / "id_ed25519.pub").read_text().split()[:2] == new.public_key.split()
    assert os.stat(key).st_mode & 0o777 == 0o600
    finished = promote_next(str(key), run)
    assert not finished.changed and finished.public_key == new.public_key
