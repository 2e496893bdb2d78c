#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tunnel_probe
short_description: Check from the hub that a spoke's tunnel port leads to the spoke, or wait until it does
version_added: 1.0.0
description:
  - Runs on the hub. Connects to a spoke's forwarded port on the hub's loopback and checks that it
    leads to the spoke. For the C(ssh) forward the spoke's SSH banner must come back, so a port that
    is bound but leads nowhere (a stale session, the spoke's sshd down) is not taken for a tunnel.
    Other forwards pass when the far end keeps the connection open or answers.
  - With O(wait=true) it retries until the check passes or O(timeout) runs out.
  - With O(replaced_listener), the port must also be held by a listening socket other than those
    listed. Give it the RV(listener) read before a tunnel restart, and the module waits for the new
    session instead of being fooled by the old one that still answers.
  - With O(probes), it waits for many tunnels at once, each with its own port, timeout and replaced
    listener, and reports each one in RV(probes) without failing for a tunnel that is down. One call
    serves all the spokes of a hub, and the caller decides which spoke fails.
  - Each single probe has one total deadline, and whatever the spoke sends is made printable
    before it is returned.
author:
  - hubspoke.revtunnel developers (@hubspoke)
options:
  port:
    description:
      - The spoke's forwarded port on the hub.
      - Required unless O(probes) is given.
    type: int
  probes:
    description:
      - Tunnels to wait for at once, in parallel. Mutually exclusive with O(port); O(wait) is then ignored.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      name:
        description:
          - A name for the tunnel (the spoke's inventory name), the key of its result in RV(probes).
        type: str
        required: true
      port:
        description:
          - The spoke's forwarded port on the hub.
        type: int
        required: true
      forward:
        description:
          - As O(forward).
        type: str
        default: ssh
      timeout:
        description:
          - Seconds to wait for this tunnel; O(timeout) when not given.
        type: float
      replaced_listener:
        description:
          - As O(replaced_listener), for this tunnel.
        type: list
        elements: str
        default: []
  forward:
    description:
      - Name of the forward. V(ssh) uses the SSH banner test, any other name the open-connection test.
    type: str
    default: ssh
  host:
    description:
      - Address on the hub that the forward listens on.
    type: str
    default: 127.0.0.1
  wait:
    description:
      - When V(true), retry until the check passes, and fail when O(timeout) runs out.
      - When V(false), check once and report, never fail on a tunnel that is down.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait in all with O(wait=true).
    type: float
    default: 90
  replaced_listener:
    description:
      - Listening-socket inodes (RV(listener) of an earlier call) of a session that a restart replaces.
        The check passes only once another socket holds the port.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    details:
      - The module only reads, so it does the same in check mode.
  diff_mode:
    support: none
    details:
      - Linux only, because listening sockets are read from C(/proc/net/tcp) and C(/proc/net/tcp6).
notes:
  - Run it on the hub, for example with C(delegate_to) from the spoke's play.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hubspoke.revtunnel._attributes
"""

EXAMPLES = r"""
- name: Note which session holds the tunnel's port before a restart
  hubspoke.revtunnel.tunnel_probe:
    port: 10001
    wait: false
  delegate_to: hub.example.org
  register: before

- name: Wait until a new session of the spoke answers on its port
  hubspoke.revtunnel.tunnel_probe:
    port: 10001
    timeout: 90
    replaced_listener: "{{ before.listener }}"
  delegate_to: hub.example.org

- name: Wait for two spokes' tunnels in one call
  hubspoke.revtunnel.tunnel_probe:
    probes:
      - {name: lab-pc-1, port: 10001}
      - {name: lab-pc-2, port: 10002, timeout: 30}
  delegate_to: hub.example.org
  register: banners
"""

RETURN = r"""
up:
  description: Whether the port leads to the spoke; with O(probes), whether every tunnel does.
  returned: always
  type: bool
  sample: true
detail:
  description: The banner read, or why the check failed, as printable text; with O(probes), how many are up.
  returned: always
  type: str
  sample: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7
seconds:
  description: Seconds the check (and the wait) took.
  returned: always
  type: float
  sample: 0.004
listener:
  description: Inodes of the listening sockets on the port when the module ended.
  returned: when O(port) is given
  type: list
  elements: str
  sample: ["4711"]
probes:
  description: With O(probes), the result of each tunnel (up, detail, seconds, listener), by its name.
  returned: when O(probes) is given
  type: dict
  sample: {"lab-pc-1": {"up": true, "detail": "SSH-2.0-OpenSSH_9.2p1", "seconds": 0.004, "listener": ["4711"]}}
"""

import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._probe import (  # noqa: E402
    listening_inodes,
    probe_forward,
    wait_for_tunnel,
    wait_for_tunnels,
)


def _wait_for_many(module, params):
    probes = []
    for probe in params["probes"]:
        if not 1 <= probe["port"] <= 65535:
            module.fail_json(msg=f"probes: port {probe['port']} of {probe['name']} is not a TCP port (1-65535)")
        probes.append(dict(probe, timeout=params["timeout"] if probe["timeout"] is None else probe["timeout"]))
    if len({probe["name"] for probe in probes}) != len(probes):
        module.fail_json(msg="probes: each name may appear once")
    start = time.monotonic()
    found = wait_for_tunnels(probes, host=params["host"])
    results = {name: dict(up=result.up, detail=result.detail, seconds=round(result.seconds, 3), listener=listener)
               for name, (result, listener) in found.items()}
    up = sum(1 for result in results.values() if result["up"])
    module.exit_json(changed=False, up=up == len(results), detail=f"{up} of {len(results)} up",
                     seconds=round(time.monotonic() - start, 3), probes=results)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            port=dict(type="int"),
            probes=dict(type="list", elements="dict", options=dict(
                name=dict(type="str", required=True),
                port=dict(type="int", required=True),
                forward=dict(type="str", default="ssh"),
                timeout=dict(type="float"),
                replaced_listener=dict(type="list", elements="str", default=[]),
            )),
            forward=dict(type="str", default="ssh"),
            host=dict(type="str", default="127.0.0.1"),
            wait=dict(type="bool", default=True),
            timeout=dict(type="float", default=90.0),
            replaced_listener=dict(type="list", elements="str", default=[]),
        ),
        required_one_of=[("port", "probes")],
        mutually_exclusive=[("port", "probes")],
        supports_check_mode=True,
    )
    params = module.params
    if params["probes"] is not None:
        _wait_for_many(module, params)
    if not 1 <= params["port"] <= 65535:
        module.fail_json(msg=f"port {params['port']} is not a TCP port (1-65535)")
    if params["wait"]:
        result, listener = wait_for_tunnel(params["port"], params["forward"], params["timeout"],
                                           replaced=params["replaced_listener"], host=params["host"])
    else:
        listener = listening_inodes(params["port"])
        result = probe_forward(params["forward"], params["port"], min(3.0, params["timeout"]), host=params["host"])
    output = dict(changed=False, up=result.up, detail=result.detail, seconds=round(result.seconds, 3),
                  listener=listener)
    if params["wait"] and not result.up:
        module.fail_json(msg=f"port {params['port']} on the hub does not lead to the spoke after "
                             f"{params['timeout']:g} s: {result.detail}", **output)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
