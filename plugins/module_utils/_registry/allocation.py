# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stable, collision-free ports from a range: what a run gives every spoke's forwards."""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _rules
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.document import RegistryError, entry_label


@dataclass
class Plan:
    """The registry map after allocation and how it differs from before."""

    ports: dict
    added: list = field(default_factory=list)
    released: list = field(default_factory=list)
    moved: list = field(default_factory=list)


def plan_allocation(current, requests, range_start, range_end, listening, prune):
    """Give every requested entry a port, keeping existing ones; O(n log n).

    ``current`` is the registry map, ``requests`` come from normalize_spokes,
    ``listening`` is the set of ports with a LISTEN socket on the host.
    Raises RegistryError on a pin conflict or when the range is too small.
    """
    wanted = {req.name: req for req in requests}
    final = {}
    owner = {}  # port -> "name/forward" of every entry whose port is settled
    existing = {}  # (name, forward) -> port, for listed entries already registered
    released = []

    for name, forwards in current.items():
        req = wanted.get(name)
        for forward, port in forwards.items():
            if req is not None and forward in req.forwards:
                existing[(name, forward)] = port
            elif prune:
                released.append((name, forward))
            else:
                # unlisted and kept verbatim: not ours to move this run
                final.setdefault(name, {})[forward] = port
                owner[port] = entry_label(name, forward)

    # listed entries that keep their port, unless a pin moves them
    pinned = {(req.name, _rules.PRIMARY_FORWARD): req.pin for req in requests if req.pin is not None}
    for key, port in existing.items():
        if key not in pinned and range_start <= port <= range_end:
            final.setdefault(key[0], {})[key[1]] = port
            owner[port] = entry_label(*key)

    for (name, forward), pin in sorted(pinned.items()):
        label = entry_label(name, forward)
        if pin in owner:
            raise RegistryError(
                f"port {pin} pinned for {name} is registered to {owner[pin]}: "
                f"pin another port for {name} (revtunnel_port), or release or re-pin {owner[pin]} first"
            )
        if pin in listening and existing.get((name, forward)) != pin:
            raise RegistryError(
                f"port {pin} pinned for {name} is already in use on this host by another program "
                "(a LISTEN socket that is not this spoke's tunnel): pin a free port (revtunnel_port) "
                "or stop that program"
            )
        final.setdefault(name, {})[forward] = pin
        owner[pin] = label

    # entries still without a port, in a fixed order so input order never matters
    needing = sorted(
        (req.name, index, forward)
        for req in requests
        for index, forward in enumerate(req.forwards)
        if forward not in final.get(req.name, {})
    )
    taken = {port for port in owner if range_start <= port <= range_end}
    busy = {port for port in listening if range_start <= port <= range_end} - taken
    size = range_end - range_start + 1
    free = size - len(taken) - len(busy)
    if len(needing) > free:
        count = "1 entry needs" if len(needing) == 1 else f"{len(needing)} entries need"
        raise RegistryError(
            f"port range {range_start}-{range_end} is too small: {count} a new port "
            f"({len(taken) + len(needing)} ports needed in all) but only {free} of its {size} ports are free "
            f"({len(taken)} registered, {len(busy)} in use by other programs); widen the range "
            "(revtunnel_port_range_start, revtunnel_port_range_end), or release unlisted entries with prune"
        )

    added = []
    moved = []
    candidate = range_start
    for name, _index, forward in needing:
        while candidate in taken or candidate in busy:
            candidate += 1
        final.setdefault(name, {})[forward] = candidate
        old = existing.get((name, forward))
        if old is None:
            added.append((name, forward))
        else:
            moved.append({"entry": entry_label(name, forward), "from": old, "to": candidate})
        candidate += 1

    for (name, forward), pin in pinned.items():
        old = existing.get((name, forward))
        if old is None:
            added.append((name, forward))
        elif old != pin:
            moved.append({"entry": entry_label(name, forward), "from": old, "to": pin})

    return Plan(
        ports={name: dict(sorted(final[name].items())) for name in sorted(final)},
        added=[entry_label(*key) for key in sorted(added)],
        released=[entry_label(*key) for key in sorted(released)],
        moved=sorted(moved, key=lambda item: item["entry"]),
    )
