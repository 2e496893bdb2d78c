# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""spoke_registry's action option hub_paths: a key rotation reaches each hub's registry by the hub's own paths."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleActionFail
from ansible_collections.hubspoke.revtunnel.plugins.action.spoke_registry import with_hub_paths

HOSTVARS = {"hub-a": {"revtunnel_registry_path": "/srv/ports.json", "revtunnel_user": "tun", "inventory_dir": "/lab"},
            "hub-b": {}}


def test_the_hubs_own_paths_fill_what_the_task_does_not_give():
    args = with_hub_paths({"hub": "hub-a", "hub_paths": True, "trust": []}, HOSTVARS)
    assert args == {"hub": "hub-a", "trust": [], "path": "/srv/ports.json",
                    "authorized_keys": "/etc/ssh/revtunnel/authorized_keys", "authorized_keys_group": "tun",
                    "records_dir": "/lab/.revtunnel"}
    given = with_hub_paths({"hub": "hub-b", "hub_paths": "yes", "path": "/x.json"}, HOSTVARS)
    assert given["path"] == "/x.json" and given["authorized_keys_group"] == "tunnel"


def test_without_hub_paths_the_arguments_pass_as_given():
    assert with_hub_paths({"path": "/p", "hub_paths": False}, HOSTVARS) == {"path": "/p"}
    assert with_hub_paths({"path": "/p"}, HOSTVARS) == {"path": "/p"}


@pytest.mark.parametrize("hub", [None, "", "not-a-hub"])
def test_hub_paths_needs_a_hub_of_the_inventory(hub):
    with pytest.raises(AnsibleActionFail, match="hub_paths needs hub"):
        with_hub_paths({"hub": hub, "hub_paths": True}, HOSTVARS)


@pytest.mark.parametrize("value", ["ture", "maybe", 2, [True]])
def test_a_mistyped_hub_paths_is_refused_not_read_as_false(value):
    # Read as false, a rotation would write the default registry and key paths instead of the hub's.
    with pytest.raises(AnsibleActionFail, match="hub_paths must be true or false"):
        with_hub_paths({"hub": "hub-a", "hub_paths": value}, HOSTVARS)
