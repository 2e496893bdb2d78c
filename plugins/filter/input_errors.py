# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: input_errors
short_description: Every rule a role's values break, one message per value, from the collection's one rulebook
version_added: 1.2.0
author:
  - hubspoke.revtunnel developers (@hubspoke)
description:
  - The hub, spoke and client roles' preflights give their values to this filter and fail when it returns
    anything, naming every variable to fix at once. The rules are the collection's own Python
    (C(plugins/module_utils/_rules.py)), the same the modules apply, so each rule is written once.
  - Every value that reaches a file ssh, sshd or systemd reads (a config line, a unit line, an
    C(authorized_keys) option) is checked, as one line with no quote, no option and no token to expand.
options:
  _input:
    description: The role's values, by variable name, plus what the role computed (see O(role)).
    type: dict
    required: true
  role:
    description:
      - V(spoke) also takes C(hubs) (the spoke's hubs), C(hub_addresses) and C(hub_ports) (what it dials for each)
        and C(inventory_hostname).
      - V(hub) also takes C(spokes) (the inventory's spokes) and C(records_dir).
      - V(client) also takes C(hubs) (each hub's C(address) and C(port) as the operator dials them) and C(spokes)
        (each spoke's C(forwards)).
    type: str
    choices: [spoke, hub, client]
    required: true
"""

EXAMPLES = r"""
- name: Check the client's values and every hub's and spoke's value that reaches the operator's ssh config
  ansible.builtin.fail:
    msg: "{{ problems | join('; ') }}"
  when: problems | length > 0
  vars:
    problems: "{{ {'revtunnel_lab_name': revtunnel_lab_name} | hubspoke.revtunnel.input_errors('client') }}"
"""

RETURN = r"""
_value:
  description: One message per value that breaks a rule, naming the variable and what to change; empty when all pass.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _rules  # noqa: E402

CHECKS = {"spoke": _rules.check_spoke, "hub": _rules.check_hub, "client": _rules.check_client}


def input_errors(values, role):
    if role not in CHECKS:
        raise AnsibleFilterError(f"input_errors: role must be one of {', '.join(CHECKS)}, got {role!r}")
    if not isinstance(values, dict):
        raise AnsibleFilterError(f"input_errors: give the values as a mapping, got {type(values).__name__}")
    return CHECKS[role](dict(values))


class FilterModule:
    """hubspoke.revtunnel filters."""

    def filters(self):
        return {"input_errors": input_errors}
