# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: spoke_requests
short_description: The hub's registry request for every spoke, in one pass over the inventory
version_added: 1.0.0
author:
  - hubspoke.revtunnel developers (@hubspoke)
description:
  - Turns a list of spoke inventory names into the O(hubspoke.revtunnel.spoke_registry#module:spokes)
    list, reading each spoke's variables once. It replaces a C(set_fact) loop, whose list copy per step
    made the hub's run quadratic in the number of spokes.
  - Spokes with C(revtunnel_state=absent) are left out, so the registry releases them.
  - Each request carries the spoke's C(revtunnel_port) pin, its C(revtunnel_forwards), its
    C(revtunnel_key_from), and the key it handed over in this run (C(revtunnel_spoke_public_key)).
    A spoke that this run did not reach has no key, and the registry keeps the keys it holds.
  - Values are passed on unchanged; the module validates them.
options:
  _input:
    description: Inventory names of the spokes, for example C(groups['spokes']).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) of the play.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Record every spoke of the inventory in the hub's registry
  hubspoke.revtunnel.spoke_registry:
    spokes: "{{ groups['spokes'] | hubspoke.revtunnel.spoke_requests(hostvars) }}"
    prune: true
"""

RETURN = r"""
_value:
  description: One request per present spoke, in the order of the input.
  type: list
  elements: dict
"""

_FORWARD_KEYS = ("name", "port", "host")


def _forward(forward):
    # Mappings go through as plain dicts of the keys the module knows; anything else is for the module to refuse.
    if hasattr(forward, "items"):
        return {key: value for key, value in forward.items() if key in _FORWARD_KEYS}
    return forward


def spoke_requests(names, hostvars):
    """One registry request per spoke that is not marked absent."""
    requests = []
    for name in names:
        spoke = hostvars[name]
        if spoke.get("revtunnel_state", "present") == "absent":
            continue
        request = {"name": name, "forwards": ["ssh"] + [_forward(f) for f in spoke.get("revtunnel_forwards") or []]}
        if spoke.get("revtunnel_port") is not None:
            request["port"] = spoke["revtunnel_port"]
        if spoke.get("revtunnel_key_from"):
            request["key_from"] = spoke["revtunnel_key_from"]
        if spoke.get("revtunnel_spoke_public_key"):
            request["key"] = spoke["revtunnel_spoke_public_key"]
        requests.append(request)
    return requests


class FilterModule:
    """hubspoke.revtunnel filters."""

    def filters(self):
        return {"spoke_requests": spoke_requests}
