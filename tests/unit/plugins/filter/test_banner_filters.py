# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The batched banner check's two filters: the hubs' probes gathered from the spokes, one spoke's failures."""

from __future__ import annotations

from ansible_collections.hubspoke.revtunnel.plugins.filter.banner_failures import banner_failures
from ansible_collections.hubspoke.revtunnel.plugins.filter.banner_waits import banner_waits

HOSTVARS = {
    "pc-1": {"tunnel": {"waits": {"hub-a": {"port": "10001", "timeout": 90, "replaced_listener": []},
                                  "hub-b": {"port": 20001, "timeout": 5, "replaced_listener": ["77"]}}}},
    "pc-2": {"tunnel": {"waits": {"hub-b": {"port": 20002, "timeout": 90}}}},
    "pc-off": {},
}


def test_each_hub_gets_the_probes_of_the_spokes_that_asked_it():
    waits = banner_waits(["pc-1", "pc-off", "pc-2"], HOSTVARS, "tunnel")
    assert waits == [
        {"hub": "hub-a", "probes": [{"name": "pc-1", "port": 10001, "timeout": 90.0, "replaced_listener": []}]},
        {"hub": "hub-b", "probes": [{"name": "pc-1", "port": 20001, "timeout": 5.0, "replaced_listener": ["77"]},
                                    {"name": "pc-2", "port": 20002, "timeout": 90.0, "replaced_listener": []}]},
    ]
    assert banner_waits(["pc-off"], HOSTVARS, "tunnel") == []


def test_a_spoke_fails_for_each_hub_that_did_not_read_its_banner_and_says_why():
    results = [
        {"item": {"hub": "hub-a"}, "unreachable": True, "msg": "ssh: connect to host hub-a: timed out"},
        {"item": {"hub": "hub-b"}, "probes": {"pc-1": {"up": False, "detail": "no SSH banner in time"},
                                              "pc-2": {"up": True, "detail": "SSH-2.0-OpenSSH"}}},
    ]
    failed = banner_failures(results, "pc-1", HOSTVARS["pc-1"]["tunnel"]["waits"])
    assert [(f["hub"], f["port"]) for f in failed] == [("hub-a", "10001"), ("hub-b", 20001)]
    assert "unreachable" in failed[0]["detail"] and failed[1]["detail"] == "no SSH banner in time"
    assert banner_failures(results, "pc-2", HOSTVARS["pc-2"]["tunnel"]["waits"]) == []


def test_a_hub_without_a_result_or_without_the_spoke_counts_as_failed():
    waits = {"hub-a": {"port": 1, "timeout": 2}, "hub-c": {"port": 3, "timeout": 4}}
    results = [{"item": {"hub": "hub-a"}, "probes": {}}, {"item": {"hub": "hub-z"}, "probes": {}}]
    failed = banner_failures(results, "pc-1", waits)
    assert [f["hub"] for f in failed] == ["hub-a", "hub-c"]
    assert "did not include" in failed[0]["detail"] and "not asked" in failed[1]["detail"]
    assert banner_failures([{"item": {"hub": "hub-a"}, "failed": True, "msg": "boom"}], "pc-1",
                           {"hub-a": {"port": 1}})[0]["detail"] == "the check failed on the hub: boom"
