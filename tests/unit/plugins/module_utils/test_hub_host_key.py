# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hub's host key: read for the controller's copy, restored on a rebuilt hub, a wrong pair refused."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._hub_host_key import HostKeyError, ensure_host_key


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def make_pair(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.read_text(), " ".join(path.with_suffix(".pub").read_text().split()[:2])


def test_the_pair_on_the_hub_is_read_for_the_copy(tmp_path):
    private, public = make_pair(tmp_path / "ssh_host_ed25519_key")
    result = ensure_host_key(run, str(tmp_path / "ssh_host_ed25519_key"))
    assert (result.changed, result.public_key, result.private_key) == (False, public, private)


def test_a_rebuilt_hub_gets_the_saved_pair_back_once(tmp_path):
    saved_private, saved_public = make_pair(tmp_path / "saved")
    path = tmp_path / "ssh_host_ed25519_key"
    make_pair(path)  # the re-installed hub's fresh key
    assert ensure_host_key(run, str(path), saved_private, saved_public, check_mode=True).changed
    assert path.read_text() != saved_private  # check mode wrote nothing
    result = ensure_host_key(run, str(path), saved_private, saved_public)
    assert result.changed and result.restored and result.public_key == saved_public
    assert path.read_text() == saved_private and path.with_suffix(".pub").read_text().strip() == saved_public
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not ensure_host_key(run, str(path), saved_private, saved_public).changed


def test_a_saved_pair_that_does_not_match_is_refused_and_the_hub_keeps_its_key(tmp_path):
    saved_private, _public = make_pair(tmp_path / "saved")
    _other_private, other_public = make_pair(tmp_path / "other")
    path = tmp_path / "ssh_host_ed25519_key"
    current, _current_public = make_pair(path)
    with pytest.raises(HostKeyError, match="does not match"):
        ensure_host_key(run, str(path), saved_private, other_public)
    assert path.read_text() == current
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_hub_without_a_host_key_says_what_to_install(tmp_path):
    with pytest.raises(HostKeyError, match="install and start openssh-server"):
        ensure_host_key(run, str(tmp_path / "ssh_host_ed25519_key"))
