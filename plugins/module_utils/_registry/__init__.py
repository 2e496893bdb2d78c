# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hub's spoke registry, the one record of each spoke's ports and trusted keys: one backend in one package.

- ``document``: the file format (versions 1 and 2, docs/registry-format.md), its one parser and serializer,
  the readers the hub's commands use, key fingerprints;
- ``request``: the one validator of a run's input (through the rulebook ``_rules``);
- ``allocation``: stable, collision-free ports from a range;
- ``storage``: the lock and the atomic write with its ``.bak``;
- ``authorized_keys``: the tunnel account's file, rendered from the registry, and its one parser;
- ``transaction``: one locked run that reads, allocates, records keys, prunes and writes both files.

Pure Python with no Ansible import: the modules spoke_registry and port_allocation call ``transaction``, the
hub's commands read through ``document``, and everything is unit-tested with plain pytest.
"""
