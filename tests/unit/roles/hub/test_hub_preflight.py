# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hub role's first preflight check, run by the real ansible-playbook on this machine as the hub: the spokes'
port range is refused where it overlaps the hub's ephemeral ports (read from the hub), and a switch that is not
a boolean is refused instead of being read as false. Both stop at that first check, before anything is read or
written beyond /proc and sshd_config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def inventory():
    low, _high = (int(n) for n in LOCAL_PORT_RANGE.read_text().split())
    return {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                    "children": {
                        "hub": {"hosts": {
                            "hub-ephemeral": {"revtunnel_port_range_start": low, "revtunnel_port_range_end": low + 99},
                            "hub-switch": {"revtunnel_hub_bind_filter": "ture"}}},
                        "spokes": {"hosts": {}}}}}


PLAYBOOK = [{"hosts": "hub", "gather_facts": False, "tasks": [
    {"ansible.builtin.import_role": {"name": "hubspoke.revtunnel.hub", "tasks_from": "preflight.yml"}}]}]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, collections_root):
    if not LOCAL_PORT_RANGE.exists():
        pytest.fail("this test reads the machine's ephemeral port range from /proc: run it on Linux")
    where = tmp_path_factory.mktemp("hub-preflight")
    (where / "hosts.yml").write_text(yaml.safe_dump(inventory()))
    (where / "play.yml").write_text(yaml.safe_dump(PLAYBOOK))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_STDOUT_CALLBACK="task_report",
               ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).resolve().parents[2] / "callback_plugins"),
               ANSIBLE_CONFIG=str(where / "none.cfg"), ANSIBLE_LOCALHOST_WARNING="false")
    playbook = [sys.executable, "-m", "ansible.cli.playbook", "-i", str(where / "hosts.yml"), str(where / "play.yml")]
    proc = subprocess.run(playbook, capture_output=True, text=True, env=env, cwd=where, timeout=300, check=False)
    report = json.loads(proc.stdout)
    found = {}
    for task in report["plays"][0]["tasks"]:
        for host, result in task["hosts"].items():
            if result.get("failed"):
                found.setdefault(host, (task["task"]["name"], result))
    return found


def test_a_range_inside_the_hubs_ephemeral_ports_stops_the_run_naming_both_bounds(outcome):
    # Red team red2: connect() took a spoke's port from that range, unseen by the bind filter.
    name, result = outcome["hub-ephemeral"]
    assert name.endswith("Check the hub's inventory, accounts, paths, limits, operators and system"), name
    for word in ("Hub hub-ephemeral: ", "revtunnel_port_range_start, revtunnel_port_range_end",
                 "net.ipv4.ip_local_port_range"):
        assert word in result["msg"], result["msg"]


def test_a_switch_that_is_not_a_boolean_stops_the_run_naming_it(outcome):
    name, result = outcome["hub-switch"]
    assert name.endswith("Check the hub's inventory, accounts, paths, limits, operators and system"), name
    assert "revtunnel_hub_bind_filter ('ture') must be true or false" in result["msg"], result["msg"]
