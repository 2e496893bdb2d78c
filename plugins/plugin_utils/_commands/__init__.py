# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The commands that run on the hub and the spokes, as one package: one library, installed one way.

- ``status``: revtunnel-status, the operators' view of every tunnel, now or over a past window;
- ``metrics``: revtunnel-metrics, the timer's recorder of node_exporter metrics and up/down history;
- ``reaper``: revtunnel-reaper, the hub's daemon that frees the ports of dead sessions;
- ``watch``: revtunnel-watch, the spoke's watchdog of one tunnel;
- ``journal``: reading journalctl's JSON; ``cli``: the entry point that dispatches by command name;
- ``bundle``: builds the zipapp each host runs (on the controller, through the lookup
  hubspoke.revtunnel.command_bundle).

They share the collection's module_utils (_probe, _procfs, _fs, _rules, _registry) with the modules, so the
banner test, the /proc reader, the atomic writer and the registry reader are each written once. On a host
they run from one zipapp (``/usr/local/lib/revtunnel/revtunnel.pyz``), which holds exactly these files
under their collection names: no copies, no sys.path inserts.
"""
