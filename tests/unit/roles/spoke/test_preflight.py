# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The spoke role's preflight, run by the real ansible-playbook: one check, one message per spoke naming each
variable to fix. It contacts no host, so every case is a spoke of one inventory run in one playbook run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

INVENTORY = {
    "all": {
        "vars": {"ansible_connection": "local"},
        "children": {
            "hub": {"hosts": {"hub-1": {"ansible_host": "192.0.2.1"}}},
            "hubs_two": {"hosts": {
                "hub-2": {"revtunnel_hub_address": "hub2.example.org"},
                "hub-3": {"revtunnel_hub_address": "hub2.example.org", "revtunnel_hub_port": 70000},
                "hub-6": {"revtunnel_hub_address": "hub2.example.org"}}},
            "hubs_nat": {"hosts": {  # two hubs behind one address, told apart by their ports
                "hub-4": {"ansible_host": "203.0.113.5"},
                "hub-5": {"ansible_host": "203.0.113.5", "revtunnel_hub_port": 2222}}},
            "nobody": {"hosts": {}},
            "spokes": {"hosts": {
                "pc-ok": {},
                "pc-nat": {"revtunnel_hub_group": "hubs_nat"},
                "pc-newline": {"revtunnel_spoke_user": "revtunnel\n"},
                "pc-dotdot": {"revtunnel_spoke_home": "/var/lib/../etc"},
                "pc-null": {"revtunnel_hub_address": None},
                "pc-user": {"revtunnel_spoke_user": "root"},
                "pc-home": {"revtunnel_spoke_home": "var/lib/x y"},
                "pc-address": {"revtunnel_hub_address": "hub.example.org\n    ProxyCommand id"},
                "pc-port": {"revtunnel_hub_port": "22 -oProxyCommand=id"},
                "pc-two": {"revtunnel_hub_group": "hubs_two"},
                "pc-none": {"revtunnel_hub_group": "nobody"},
                "pc-switch": {"revtunnel_spoke_penalty_exempt": "ture"},
                "pc-state": {"revtunnel_state": "Absent"},
                "hub-1": {},
            }},
        },
    },
}

PREFLIGHT = {"ansible.builtin.import_role": {"name": "hubspoke.revtunnel.spoke", "tasks_from": "preflight.yml"}}
PLAYBOOK = [{"hosts": "spokes", "gather_facts": False, "tasks": [PREFLIGHT]}]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, collections_root):
    where = tmp_path_factory.mktemp("preflight")
    (where / "hosts.yml").write_text(yaml.safe_dump(INVENTORY))
    (where / "play.yml").write_text(yaml.safe_dump(PLAYBOOK))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_STDOUT_CALLBACK="task_report",
               ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).resolve().parents[2] / "callback_plugins"),
               ANSIBLE_CONFIG=str(where / "none.cfg"), ANSIBLE_LOCALHOST_WARNING="false")
    playbook = [sys.executable, "-m", "ansible.cli.playbook", "-i", str(where / "hosts.yml"), str(where / "play.yml")]
    proc = subprocess.run(playbook,
                          capture_output=True, text=True, env=env, cwd=where, timeout=300, check=False)
    report = json.loads(proc.stdout)
    task = report["plays"][0]["tasks"][-1]
    return dict(task["hosts"])


@pytest.mark.parametrize("spoke", ["pc-ok", "pc-nat"])
def test_a_spoke_with_sound_values_passes(outcome, spoke):
    assert not outcome[spoke].get("failed") and outcome[spoke].get("skipped"), outcome[spoke]


@pytest.mark.parametrize("spoke, words", [
    ("pc-user", ["revtunnel_spoke_user ('root')", "not root"]),
    ("pc-home", ["revtunnel_spoke_home ('var/lib/x y')", "a path starting with '/'"]),
    ("pc-address", ["revtunnel_hub_address of hub hub-1", "host name or an IP address"]),
    ("pc-port", ["revtunnel_hub_port of hub hub-1 ('22 -oProxyCommand=id')", "TCP port"]),
    ("pc-none", ["group 'nobody' (revtunnel_hub_group) holds no host"]),
    ("pc-newline", ["revtunnel_spoke_user ('revtunnel\\n')"]),
    ("pc-dotdot", ["revtunnel_spoke_home ('/var/lib/../etc')", "without '.' or '..' parts"]),
    ("pc-null", ["revtunnel_hub_address (None) must be a host name"]),
    ("hub-1", ["in both 'hub' and the spokes"]),
    # The bool filter reads "ture" as false: the exemption would have gone without a word (red2).
    ("pc-switch", ["revtunnel_spoke_penalty_exempt ('ture') must be true or false"]),
    ("pc-state", ["revtunnel_state ('Absent') must be present or absent"]),
])
def test_a_bad_value_fails_its_spoke_with_the_variable_named(outcome, spoke, words):
    result = outcome[spoke]
    assert result.get("failed"), result
    assert result["msg"].startswith(f"Spoke {spoke}: "), result["msg"]
    for word in words:
        assert word in result["msg"], result["msg"]


def test_every_problem_of_a_spoke_is_named_in_one_message(outcome):
    message = outcome["pc-two"]["msg"]
    assert "several hubs share one revtunnel_hub_address and revtunnel_hub_port" in message, message
    assert "revtunnel_hub_port of hub hub-3 (70000)" in message, message
    assert "hub-2" not in message.split("TCP port")[0].split("revtunnel_hub_port of")[1], message
