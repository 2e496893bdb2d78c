# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one entry point of a host's command zipapp: ``revtunnel.pyz COMMAND [ARGS]``.

COMMAND is status, metrics or reaper on a hub, watch on a spoke: the zipapp of each kind of host holds only
its own commands (bundle.HUB_COMMANDS, bundle.SPOKE_COMMANDS), and each command imports only its module.
"""

from __future__ import annotations

import importlib
import sys

from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import output

PACKAGE = "ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands"
COMMANDS = ("status", "metrics", "reaper", "watch")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        output.say(f"usage: revtunnel.pyz {{{','.join(COMMANDS)}}} [ARGS]", sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"{PACKAGE}.{argv[0]}")
    except ImportError:
        output.say(f"revtunnel.pyz: {argv[0]} is not a command of this host", sys.stderr)
        return 2
    return module.main(argv[1:])
