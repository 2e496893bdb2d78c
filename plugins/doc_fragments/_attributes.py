# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The attributes every module of this collection shares (private to the collection)."""

    DOCUMENTATION = r"""
options: {}
attributes:
  idempotent:
    description:
      - When run again with the same arguments, the module reports no change.
    support: full
  platform:
    platforms: posix
"""
