# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: client_hosts
short_description: What an operator's ssh config says of each hub and spoke, read once from the inventory
version_added: 1.2.0
author:
  - hubspoke.revtunnel developers (@hubspoke)
description:
  - For the client role's template and its preflight alike, so the two never disagree on a value. Each hub's
    address is its C(revtunnel_hub_address), else its C(ansible_host), else its name; its port its
    C(revtunnel_hub_port), else 22. The first hub takes O(hub_address) and O(hub_port) when they are given.
  - Each spoke carries its C(revtunnel_forwards). The values are returned as the inventory has them; the
    filter P(hubspoke.revtunnel.input_errors#filter) checks them.
options:
  _input:
    description: The C(hostvars) of the play.
    type: raw
    required: true
  hubs:
    description: The hubs' inventory names, in the group's order.
    type: list
    elements: str
    required: true
  spokes:
    description: The spokes' inventory names.
    type: list
    elements: str
    required: true
  hub_address:
    description: C(revtunnel_client_hub_address), the first hub's address as the operator reaches it.
    type: raw
  hub_port:
    description: C(revtunnel_client_hub_port).
    type: raw
"""

EXAMPLES = r"""
- name: Show where the operator's config sends each hub
  ansible.builtin.debug:
    msg: "{{ (hostvars | hubspoke.revtunnel.client_hosts(groups['hub'], groups['spokes'])).hubs }}"
"""

RETURN = r"""
_value:
  description: C(hubs) (hub to C(address), C(port)) and C(spokes) (spoke to C(forwards)).
  type: dict
"""


def client_hosts(hostvars, hubs, spokes, hub_address=None, hub_port=None):
    found = {"hubs": {}, "spokes": {}}
    for index, hub in enumerate(hubs):
        seen = hostvars[hub]
        address = seen.get("revtunnel_hub_address") or seen.get("ansible_host") or hub
        port = seen.get("revtunnel_hub_port") or 22
        if index == 0 and hub_address is not None:
            address = hub_address
        if index == 0 and hub_port is not None:
            port = hub_port
        found["hubs"][hub] = {"address": address, "port": port}
    for spoke in spokes:
        found["spokes"][spoke] = {"forwards": hostvars[spoke].get("revtunnel_forwards") or []}
    return found


class FilterModule:
    """hubspoke.revtunnel filters."""

    def filters(self):
        return {"client_hosts": client_hosts}
