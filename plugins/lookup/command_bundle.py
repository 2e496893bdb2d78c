# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: command_bundle
short_description: The zipapp of the commands a hub or a spoke runs, built from this collection's own code
version_added: 1.2.0
author:
  - hubspoke.revtunnel developers (@hubspoke)
description:
  - Builds, on the controller, the zipapp C(revtunnel.pyz) that a host runs its commands from, and returns
    it base64-encoded for M(hubspoke.revtunnel.file_set)'s O(hubspoke.revtunnel.file_set#module:files[].content_base64).
  - V(hub) holds C(status), C(metrics) and C(reaper); V(spoke) holds C(watch). Each holds exactly the
    collection's modules those commands import (the banner probe, the C(/proc) reader, the atomic writer, the
    registry reader), under their collection names, so a host runs the code the modules run.
  - The archive is the same byte for byte for the same collection, so a re-run changes nothing.
options:
  _terms:
    description: The kind of host, V(hub) or V(spoke).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Install the hub's commands
  hubspoke.revtunnel.file_set:
    files:
      - path: /usr/local/lib/revtunnel/revtunnel.pyz
        content_base64: "{{ lookup('hubspoke.revtunnel.command_bundle', 'hub') }}"
        mode: "0755"
"""

RETURN = r"""
_raw:
  description: The zipapp, base64-encoded, one per term.
  type: list
  elements: str
"""

import base64  # noqa: E402

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import bundle  # noqa: E402

KINDS = {"hub": bundle.HUB_COMMANDS, "spoke": bundle.SPOKE_COMMANDS}


class LookupModule(LookupBase):
    """One built archive per kind of host and per controller process: every host of a run gets the same."""

    _built = {}

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        found = []
        for term in terms:
            if term not in KINDS:
                raise AnsibleLookupError(f"command_bundle: {term!r} is not a kind of host; use 'hub' or 'spoke'")
            if term not in self._built:
                self._built[term] = base64.b64encode(bundle.build(KINDS[term])).decode("ascii")
            found.append(self._built[term])
        return found
