# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the hub role picks for each system family (tasks/system.yml, vars/<system>.yml), run by the real
ansible-playbook on this machine.

Only Debian runs in the lab; the other systems are hosts of a local play whose facts are the ones the setup
module reports there (distribution, major version, family), set as facts. The role's own task file, vars files
and first_found lookup decide; a system of an unknown family must stop with a message that says what to add.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEBIAN = {"sshd": "ssh", "nologin": "/usr/sbin/nologin"}
REDHAT = {"sshd": "sshd", "nologin": "/sbin/nologin"}
# host: (distribution, major version, os_family) as ansible.builtin.setup reports them, and what the hub needs.
SYSTEMS = {
    "debian-12": (("Debian", "12", "Debian"), DEBIAN),
    "debian-13": (("Debian", "13", "Debian"), DEBIAN),
    "ubuntu-22": (("Ubuntu", "22", "Debian"), DEBIAN),
    "ubuntu-24": (("Ubuntu", "24", "Debian"), DEBIAN),
    "rhel-9": (("RedHat", "9", "RedHat"), REDHAT),
    "rocky-9": (("Rocky", "9", "RedHat"), REDHAT),
    "almalinux-9": (("AlmaLinux", "9", "RedHat"), REDHAT),
    "centos-9": (("CentOS", "9", "RedHat"), REDHAT),
}
UNKNOWN = ("Archlinux", "NA", "Archlinux")


@pytest.fixture(scope="module")
def picked(tmp_path_factory, collections_root):
    where = tmp_path_factory.mktemp("system-vars")
    hosts = {name: {"fake": dict(zip(("distribution", "distribution_major_version", "os_family"), facts))}
             for name, (facts, _want) in [*SYSTEMS.items(), ("arch", (UNKNOWN, None))]}
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                         "hosts": hosts}}
    play = [{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "Report the system as setup would", "ansible.builtin.set_fact": {
            "distribution": "{{ fake.distribution }}",
            "distribution_major_version": "{{ fake.distribution_major_version }}",
            "os_family": "{{ fake.os_family }}", "cacheable": True}},
        {"ansible.builtin.import_role": {"name": "hubspoke.revtunnel.hub", "tasks_from": "system.yml"}},
        {"name": "Show what the role picked", "ansible.builtin.debug": {
            "msg": {"sshd": "{{ _revtunnel_sshd_service }}", "nologin": "{{ _revtunnel_nologin }}"}}}]}]
    (where / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (where / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_STDOUT_CALLBACK="task_report",
               ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).resolve().parents[2] / "callback_plugins"),
               ANSIBLE_CONFIG=str(where / "none.cfg"))
    playbook = [sys.executable, "-m", "ansible.cli.playbook", "-i", str(where / "hosts.yml"), str(where / "play.yml")]
    proc = subprocess.run(playbook,
                          capture_output=True, text=True, env=env, cwd=where, timeout=300, check=False)
    report = json.loads(proc.stdout)
    tasks = {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"] for task in report["plays"][0]["tasks"]}
    return {"tasks": tasks, "stats": report["stats"]}


@pytest.mark.parametrize("host", sorted(SYSTEMS))
def test_the_hub_role_picks_the_sshd_unit_and_nologin_of_each_system(picked, host):
    assert picked["stats"][host]["failures"] == 0, picked["stats"][host]
    assert picked["tasks"]["Show what the role picked"][host]["msg"] == SYSTEMS[host][1]


def test_a_system_of_an_unknown_family_stops_saying_what_to_add(picked):
    assert picked["stats"]["arch"]["failures"] == 1
    message = picked["tasks"]["Stop on a system whose differences the role does not know"]["arch"]["msg"]
    assert message.startswith("Hub arch runs Archlinux NA (Archlinux family).")
    assert "add roles/hub/vars/Archlinux.yml" in message
    assert "arch" not in picked["tasks"]["Show what the role picked"]
