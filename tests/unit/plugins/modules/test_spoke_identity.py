# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the spoke_identity module file the way Ansible does: a subprocess fed JSON args.

Only the refusals run here (they must leave the host untouched); the lab scenarios run it for real on spokes.
"""

from __future__ import annotations

import functools
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
MODULE_PATH = os.path.join(REPO_ROOT, "plugins", "modules", "spoke_identity.py")


@pytest.fixture
def run_module(module_runner):
    """Return a function that runs the module with args and gives (exit code, parsed JSON)."""
    return functools.partial(module_runner, MODULE_PATH)


def test_an_unresolvable_hub_fails_before_the_account_or_home_exist(tmp_path, run_module):
    home = tmp_path / "home"
    rc, out = run_module({"user": "revtunnel-never-made", "home": str(home),
                          "resolve": [{"hub": "hub-1", "address": "no-such-hub.invalid"}]})
    assert rc != 0 and out["failed"] and "hub hub-1: revtunnel_hub_address=no-such-hub.invalid" in out["msg"]
    assert not home.exists()
    with pytest.raises(KeyError):
        __import__("pwd").getpwnam("revtunnel-never-made")


def test_root_is_refused(tmp_path, run_module):
    rc, out = run_module({"user": "root", "home": str(tmp_path / "home")})
    assert rc != 0 and "revtunnel_spoke_user" in out["msg"] and not (tmp_path / "home").exists()


def test_check_mode_reports_a_new_identity_and_makes_nothing(tmp_path, run_module):
    rc, out = run_module({"user": "revtunnel-never-made", "home": str(tmp_path / "home"),
                          "resolve": [{"hub": "hub-1", "address": "localhost"}]}, check_mode=True)
    assert rc == 0 and out["changed"] and out["account_created"] and out["public_key"] == ""
    assert "127.0.0.1" in out["addresses"]["hub-1"] and not (tmp_path / "home").exists()
