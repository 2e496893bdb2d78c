# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: hub_paths
short_description: Where a hub keeps its registry, its tunnel keys and, on the controller, its records
version_added: 1.2.0
author:
  - hubspoke.revtunnel developers (@hubspoke)
description:
  - The one place the other roles and playbooks read a hub's paths from, whether or not the hub role runs in
    the same play (a key rotation limited to one spoke, the status playbook, the client role).
  - Each value is the hub's own inventory variable when it is set, else the hub role's default.
  - C(registry) is C(revtunnel_registry_path), C(authorized_keys) is C(<revtunnel_authorized_keys_dir>/authorized_keys),
    C(records_dir) is C(revtunnel_hub_records_dir), by default C(<inventory_dir>/.revtunnel), and C(user) is
    C(revtunnel_user), the tunnel account whose group reads the authorized_keys file.
options:
  _input:
    description: The hub's C(hostvars), for example C(hostvars['lab-hub']).
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Trust a spoke's next key on each hub, keeping the controller's copy of its records
  hubspoke.revtunnel.spoke_registry:
    path: "{{ (hostvars[item] | hubspoke.revtunnel.hub_paths).registry }}"
    records_dir: "{{ (hostvars[item] | hubspoke.revtunnel.hub_paths).records_dir }}"
    hub: "{{ item }}"
    trust: [{name: "{{ inventory_hostname }}", key: "{{ next_key }}"}]
  delegate_to: "{{ item }}"
  loop: "{{ groups['hub'] }}"
"""

RETURN = r"""
_value:
  description: C(registry), C(authorized_keys), C(records_dir) and C(user) of the hub.
  type: dict
"""

# The hub role's defaults (roles/hub/defaults/main.yml); a unit test keeps the two the same.
DEFAULTS = {
    "revtunnel_user": "tunnel",
    "revtunnel_registry_path": "/var/lib/revtunnel/ports.json",
    "revtunnel_authorized_keys_dir": "/etc/ssh/revtunnel",
}
RECORDS_DIR_NAME = ".revtunnel"


def records_dir(hostvars):
    """The hub's records directory: revtunnel_hub_records_dir, else .revtunnel beside its inventory."""
    given = hostvars.get("revtunnel_hub_records_dir")
    if given is not None:
        return given
    base = hostvars.get("inventory_dir") or hostvars.get("playbook_dir") or "."
    return f"{base}/{RECORDS_DIR_NAME}"


def hub_paths(hostvars):
    def value(name):
        found = hostvars.get(name)
        return DEFAULTS[name] if found is None else found

    return {
        "registry": value("revtunnel_registry_path"),
        "authorized_keys": f"{value('revtunnel_authorized_keys_dir')}/authorized_keys",
        "records_dir": records_dir(hostvars),
        "user": value("revtunnel_user"),
    }


class FilterModule:
    """hubspoke.revtunnel filters."""

    def filters(self):
        return {"hub_paths": hub_paths}
