# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The spoke role's batched banner check (tasks/banner.yml), run by the real ansible-playbook on this machine.

Two "hubs": one reached with the local connection, whose loopback serves a banner on one port and nothing on
another, and one reached by ssh on port 1, so it is lost during the check. A run_once task that fails or loses
its host fails every spoke of the batch in Ansible's linear strategy; here each spoke must fail on its own,
with the reason, and a spoke whose hubs all read its banner must go on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml


def _serve_banner(listener, stop):
    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _peer = listener.accept()
        except OSError:
            continue
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_test\r\n")


def _free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, collections_root):
    where = tmp_path_factory.mktemp("banner")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    thread = threading.Thread(target=_serve_banner, args=(listener, stop), daemon=True)
    thread.start()
    up, down = listener.getsockname()[1], _free_port()

    def wait(port):
        return {"port": port, "timeout": 2, "replaced_listener": []}

    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                         "children": {
                             "hub": {"hosts": {"hub-here": {}, "hub-lost": {
                                 "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1,
                                 "ansible_ssh_common_args": "-o ConnectTimeout=2 -o BatchMode=yes"}}},
                             "spokes": {"hosts": {
                                 "pc-good": {"waits": {"hub-here": wait(up)}},
                                 "pc-silent": {"waits": {"hub-here": wait(down)}},
                                 "pc-two-hubs": {"waits": {"hub-here": wait(up), "hub-lost": wait(up)}}}}}}}
    play = [{"hosts": "spokes", "gather_facts": False, "tasks": [
        {"name": "Record what each hub should read",
         "ansible.builtin.set_fact": {"__revtunnel_spoke_tunnel": {"waits": "{{ waits }}"}}},
        {"ansible.builtin.import_role": {"name": "hubspoke.revtunnel.spoke", "tasks_from": "banner.yml"}},
        {"name": "Go on", "ansible.builtin.debug": {"msg": "went on"}}]}]
    (where / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (where / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_STDOUT_CALLBACK="task_report",
               ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).resolve().parents[2] / "callback_plugins"),
               ANSIBLE_CONFIG=str(where / "none.cfg"), ANSIBLE_HOST_KEY_CHECKING="false")
    try:
        playbook = [sys.executable, "-m", "ansible.cli.playbook", "-i", str(where / "hosts.yml"),
                    str(where / "play.yml")]
        proc = subprocess.run(playbook,
                              capture_output=True, text=True, env=env, cwd=where, timeout=300, check=False)
    finally:
        stop.set()
        thread.join()
        listener.close()
    report = json.loads(proc.stdout)
    tasks = {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"] for task in report["plays"][0]["tasks"]}
    return {"tasks": tasks, "stats": report["stats"], "rc": proc.returncode}


def test_one_call_per_hub_for_every_spoke(outcome):
    batch = outcome["tasks"]["Wait until each hub reads the SSH banner of its spokes through their tunnels"]
    assert len(batch) == 1, batch
    items = {result["item"]["hub"]: result for result in next(iter(batch.values()))["results"]}
    assert sorted(items) == ["hub-here", "hub-lost"]
    assert [probe["name"] for probe in items["hub-here"]["item"]["probes"]] == ["pc-good", "pc-silent", "pc-two-hubs"]
    assert items["hub-lost"].get("unreachable"), items["hub-lost"]


def test_a_spoke_whose_hubs_read_its_banner_goes_on(outcome):
    assert outcome["stats"]["pc-good"]["failures"] == 0, outcome["stats"]
    assert outcome["tasks"]["Go on"]["pc-good"]["msg"] == "went on"


@pytest.mark.parametrize("spoke, reasons", [
    ("pc-silent", ["hub hub-here does not read an SSH banner", "nothing listens on the port"]),
    ("pc-two-hubs", ["hub hub-lost does not read an SSH banner", "the hub was unreachable"]),
])
def test_each_other_spoke_fails_alone_with_its_reason(outcome, spoke, reasons):
    assert outcome["stats"][spoke]["failures"] == 1 and outcome["stats"][spoke]["rescued"] == 1, outcome["stats"]
    message = outcome["tasks"]["Stop because a hub does not see the tunnel"][spoke]["msg"]
    assert message.startswith(f"Spoke {spoke}: ") and "Last lines of the tunnel units' journal" in message
    for reason in reasons:
        assert reason in message, message
    assert spoke not in outcome["tasks"]["Go on"]
    assert outcome["rc"] != 0
