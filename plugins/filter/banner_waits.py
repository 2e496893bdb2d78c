# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: banner_waits
short_description: Every hub's banner checks of this run, gathered from its spokes
version_added: 1.1.0
author:
  - hubspoke.revtunnel developers (@hubspoke)
description:
  - Reads, for each spoke of the input, the banner checks its tunnel asked of each hub in this run (the
    RV(hubspoke.revtunnel.spoke_tunnel#module:waits) of its registered M(hubspoke.revtunnel.spoke_tunnel)
    result, named by O(result)) and groups them by hub, so that each hub checks all its spokes in one
    O(hubspoke.revtunnel.tunnel_probe#module:probes) call instead of one call per spoke.
  - A spoke that asked for nothing (absent, failed before its tunnel started) is left out.
options:
  _input:
    description: Inventory names of the spokes, for example C(ansible_play_batch).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) of the play.
    type: raw
    required: true
  result:
    description: The name under which each spoke registered its M(hubspoke.revtunnel.spoke_tunnel) result.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Wait until each hub reads the SSH banner of its spokes
  hubspoke.revtunnel.tunnel_probe:
    probes: "{{ item.probes }}"
  delegate_to: "{{ item.hub }}"
  run_once: true
  loop: "{{ ansible_play_batch | hubspoke.revtunnel.banner_waits(hostvars, 'tunnel') }}"
"""

RETURN = r"""
_value:
  description: One entry per hub, in the order the spokes name them, with the hub's name and its probes.
  type: list
  elements: dict
"""


def banner_waits(spokes, hostvars, result):
    """[{'hub': name, 'probes': [{'name': spoke, 'port', 'timeout', 'replaced_listener'}]}] for SPOKES.

    RESULT names each spoke's registered spoke_tunnel result, whose ``waits`` says what each hub should read.
    """
    by_hub = {}
    for spoke in spokes:
        waits = (hostvars[spoke].get(result) or {}).get("waits") or {}
        for hub, wait in waits.items():
            by_hub.setdefault(hub, []).append({
                "name": spoke,
                "port": int(wait["port"]),
                "timeout": float(wait["timeout"]),
                "replaced_listener": list(wait.get("replaced_listener") or []),
            })
    return [{"hub": hub, "probes": probes} for hub, probes in by_hub.items()]


class FilterModule:
    """hubspoke.revtunnel filters."""

    def filters(self):
        return {"banner_waits": banner_waits}
