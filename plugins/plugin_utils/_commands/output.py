# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the commands speak: one line at a time, flushed at once (journald reads the daemons' lines live)."""

from __future__ import annotations

import sys


def say(text, stream=None):
    """Write TEXT and a newline to STREAM (standard output by default), then flush it."""
    stream = sys.stdout if stream is None else stream
    stream.write(f"{text}\n")
    stream.flush()
