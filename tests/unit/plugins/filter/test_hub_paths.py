# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""hub_paths: the one place the other roles read a hub's paths, whose defaults are the hub role's own."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.hubspoke.revtunnel.plugins.filter.hub_paths import DEFAULTS, hub_paths

HUB_DEFAULTS = Path(__file__).resolve().parents[4] / "roles" / "hub" / "defaults" / "main.yml"


def test_the_filters_defaults_are_the_hub_roles_defaults():
    defaults = yaml.safe_load(HUB_DEFAULTS.read_text())
    assert {name: defaults[name] for name in DEFAULTS} == DEFAULTS


def test_a_hubs_own_values_win_and_the_records_sit_beside_its_inventory():
    assert hub_paths({"inventory_dir": "/srv/lab"}) == {
        "registry": "/var/lib/revtunnel/ports.json", "authorized_keys": "/etc/ssh/revtunnel/authorized_keys",
        "records_dir": "/srv/lab/.revtunnel", "user": "tunnel"}
    given = {"revtunnel_registry_path": "/r.json", "revtunnel_authorized_keys_dir": "/k", "revtunnel_user": "t2",
             "revtunnel_hub_records_dir": "", "inventory_dir": "/srv/lab"}
    assert hub_paths(given) == {"registry": "/r.json", "authorized_keys": "/k/authorized_keys", "records_dir": "",
                                "user": "t2"}
    assert hub_paths({"playbook_dir": "/p"})["records_dir"] == "/p/.revtunnel"
