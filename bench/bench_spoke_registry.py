# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of spoke_registry's logic: prints figures, asserts nothing.

For 100, 1,000 and 5,000 spokes, each with a key and a from= pattern, it times one full
sync_registry run (validation, lock, read, /proc/net/tcp scan, allocation, keys, registry
and authorized_keys written atomically) from an empty registry, and the re-run that finds
nothing to change, as the hub does on every playbook run. Next to each it times
port_allocation (allocate_ports) on the same spokes in the same process, and prints the ratio.

Run: python bench/bench_spoke_registry.py
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1_000, 5_000)
REPEATS = 5
RANGE_START = 20000


def _import_registry():
    """Import the module_utils from this checkout, with or without the collections/ symlink."""
    collections = REPO_ROOT / "collections"
    if not (collections / "ansible_collections" / "hubspoke" / "revtunnel").exists():
        # a fresh clone may lack the symlink: build the same layout in a temp dir
        collections = Path(tempfile.mkdtemp(prefix="revtunnel-bench-"))
        (collections / "ansible_collections" / "hubspoke").mkdir(parents=True)
        os.symlink(REPO_ROOT, collections / "ansible_collections" / "hubspoke" / "revtunnel")
    sys.path.insert(0, str(collections))
    from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import transaction

    # one backend: port_allocation is its ports-only view (allocate_ports), spoke_registry the full sync
    return transaction, transaction


def _key(seed):
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + hashlib.sha256(seed.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} revtunnel@{seed}"


def _median_time(action, prepare):
    """Median of REPEATS runs of action(); prepare() resets the state before each run."""
    samples = []
    for _round in range(REPEATS):
        prepare()
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_size(pr, sr, workdir, count):
    registry = str(workdir / f"ports-{count}.json")
    keys_file = str(workdir / f"authorized_keys-{count}")
    plain_registry = str(workdir / f"plain-{count}.json")
    range_end = RANGE_START + 2 * count  # room for the spokes plus whatever listens on the host
    names = [f"lab-pc-{i:05d}" for i in range(count)]
    spokes = [{"name": name, "key": _key(name), "key_from": ["192.0.2.0/24"]} for name in names]
    plain = [{"name": name} for name in names]

    def reset(*paths):
        def _reset():
            for path in paths:
                for suffix in ("", ".bak"):
                    if os.path.exists(path + suffix):
                        os.unlink(path + suffix)
        return _reset

    def sync():
        return sr.sync_registry(path=registry, authorized_keys=keys_file, spokes=spokes, range_start=RANGE_START,
                                range_end=range_end, prune=True)

    def allocate():
        return pr.allocate_ports(path=plain_registry, spokes=plain, range_start=RANGE_START, range_end=range_end,
                                 prune=True)

    def nothing():
        return None

    def sync_again():
        if sync().changed:
            raise SystemExit("the re-run changed something: the bench input is not idempotent")

    row = {"n": count}
    row["sync_empty"] = _median_time(sync, reset(registry, keys_file))
    row["sync_again"] = _median_time(sync_again, nothing)
    row["alloc_empty"] = _median_time(allocate, reset(plain_registry))
    row["alloc_again"] = _median_time(allocate, nothing)
    row["size"] = os.path.getsize(registry) + os.path.getsize(keys_file)
    return row


def main():
    pr, sr = _import_registry()
    workdir = Path(tempfile.mkdtemp(prefix="revtunnel-bench-data-"))
    try:
        rows = [bench_size(pr, sr, workdir, count) for count in SIZES]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"spoke_registry benchmark (median of {REPEATS} runs, Python {sys.version.split()[0]})")
    print(f"{'spokes':>8} {'sync empty':>12} {'alloc empty':>12} {'ratio':>6} "
          f"{'sync again':>12} {'alloc again':>12} {'ratio':>6} {'files':>12}")
    for row in rows:
        print(
            f"{row['n']:>8,} {row['sync_empty'] * 1000:>9.1f} ms {row['alloc_empty'] * 1000:>9.1f} ms "
            f"{row['sync_empty'] / row['alloc_empty']:>5.2f}x "
            f"{row['sync_again'] * 1000:>9.1f} ms {row['alloc_again'] * 1000:>9.1f} ms "
            f"{row['sync_again'] / row['alloc_again']:>5.2f}x {row['size']:>10,} B"
        )

    print("\ngrowth of spoke_registry between sizes (measured time ratio vs what n and n log n predict):")
    for small, large in zip(rows, rows[1:]):
        n_ratio = large["n"] / small["n"]
        nlogn_ratio = n_ratio * math.log(large["n"]) / math.log(small["n"])
        for label in ("sync_empty", "sync_again"):
            measured = large[label] / small[label]
            verdict = "within n log n" if measured <= nlogn_ratio * 1.25 else "WORSE than n log n"
            print(
                f"  {label:>10} {small['n']:>6,} -> {large['n']:>6,}: x{measured:6.2f}"
                f"   (n: x{n_ratio:.1f}, n log n: x{nlogn_ratio:.1f})  {verdict}"
            )
    print("note: the ratio column compares with port_allocation, which has no keys and writes no authorized_keys;"
          " small sizes are dominated by fixed costs (fsync, /proc read)")


if __name__ == "__main__":
    main()
