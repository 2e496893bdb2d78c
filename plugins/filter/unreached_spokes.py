# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: unreached_spokes
short_description: The spokes a run does not reach, whose keys a hub must already hold
version_added: 1.2.0
author:
  - hubspoke.revtunnel developers (@hubspoke)
description:
  - The hub role gives these spokes to O(hubspoke.revtunnel.spoke_registry#module:require_keys), so that a run
    that would leave one of them without a trusted key (a rebuilt hub without the controller's copy of its
    records) fails before it changes anything, naming each.
  - Spokes with C(revtunnel_state=absent) are left out.
options:
  _input:
    description: Inventory names of the spokes.
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) of the play.
    type: raw
    required: true
  in_run:
    description:
      - The hosts the run's C(--limit) lets in. When given, the spokes outside it are returned; when not, the
        spokes whose identity step did not report in this run (C(revtunnel_spoke_reached)).
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Refuse a run that would leave a spoke outside the limit without its key
  hubspoke.revtunnel.spoke_registry:
    spokes: "{{ groups['spokes'] | hubspoke.revtunnel.spoke_requests(hostvars) }}"
    require_keys: >-
      {{ groups['spokes'] | hubspoke.revtunnel.unreached_spokes(hostvars,
         query('ansible.builtin.inventory_hostnames', ansible_limit | default('all'))) }}
  check_mode: true
"""

RETURN = r"""
_value:
  description: Inventory names of the unreached spokes, in the order of the input.
  type: list
  elements: str
"""


def unreached_spokes(names, hostvars, in_run=None):
    """The present spokes this run does not reach, whose keys a hub must already hold.

    With IN_RUN (the hosts a --limit lets in) the spokes outside it; without, the spokes whose identity step
    did not report in this run (revtunnel_spoke_reached): switched off, unreachable or failed.
    """
    present = [name for name in names if hostvars[name].get("revtunnel_state", "present") != "absent"]
    if in_run is not None:
        inside = set(in_run)
        return [name for name in present if name not in inside]
    return [name for name in present if not hostvars[name].get("revtunnel_spoke_reached")]


class FilterModule:
    """hubspoke.revtunnel filters."""

    def filters(self):
        return {"unreached_spokes": unreached_spokes}
