# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: banner_failures
short_description: The hubs that did not read one spoke's SSH banner in a batched check
version_added: 1.1.0
author:
  - hubspoke.revtunnel developers (@hubspoke)
description:
  - Takes the loop results of the batched O(hubspoke.revtunnel.tunnel_probe#module:probes) calls (one
    per hub, see P(hubspoke.revtunnel.banner_waits#filter)) and returns, for one spoke, each hub it asked
    that did not read its banner, with the reason (the probe's detail, or the hub's failure or unreachability).
  - A hub the spoke asked for but that has no result counts as a failure.
options:
  _input:
    description: The C(results) of the registered loop.
    type: list
    elements: dict
    required: true
  spoke:
    description: The spoke's inventory name.
    type: str
    required: true
  waits:
    description: The spoke's checks, a dictionary of C(port) and C(timeout) by hub name.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Fail the spoke whose banner a hub did not read
  ansible.builtin.fail:
    msg: "{{ failures | map(attribute='hub') | join(', ') }} did not read the banner"
  vars:
    failures: "{{ banners.results | hubspoke.revtunnel.banner_failures(inventory_hostname, waits) }}"
  when: failures | length > 0
"""

RETURN = r"""
_value:
  description: One entry per failed hub, with C(hub), C(port), C(timeout) and C(detail).
  type: list
  elements: dict
"""


def _why(result, spoke):
    if result is None:
        return None, "the hub was not asked (its check did not run)"
    if result.get("unreachable"):
        return None, "the hub was unreachable: " + str(result.get("msg", ""))
    if result.get("failed"):
        return None, "the check failed on the hub: " + str(result.get("msg", ""))
    probe = (result.get("probes") or {}).get(spoke)
    if probe is None:
        return None, "the hub's check did not include this spoke"
    return probe.get("up"), str(probe.get("detail", ""))


def banner_failures(results, spoke, waits):
    """[{'hub', 'port', 'timeout', 'detail'}] for each hub in WAITS that did not read SPOKE's banner."""
    by_hub = {}
    for result in results or []:
        item = result.get("item") or {}
        if isinstance(item, dict) and "hub" in item:
            by_hub[item["hub"]] = result
    failures = []
    for hub, wait in (waits or {}).items():
        up, detail = _why(by_hub.get(hub), spoke)
        if not up:
            failures.append({"hub": hub, "port": wait.get("port"), "timeout": wait.get("timeout"), "detail": detail})
    return failures


class FilterModule:
    """hubspoke.revtunnel filters."""

    def filters(self):
        return {"banner_failures": banner_failures}
