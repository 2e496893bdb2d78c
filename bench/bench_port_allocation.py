# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of port_allocation's logic: prints figures, asserts nothing.

For 100, 1,000 and 10,000 spokes it times one full run of allocate_ports
(validation, lock, read, /proc/net/tcp scan, allocation, atomic write) from an
empty registry, and one run that adds a single spoke to the full registry. It
prints the registry size and how time grows between sizes, next to what linear
(n) and n log n growth would give. Target: under 1 s for 10,000 spokes.

Run: python bench/bench_port_allocation.py
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1_000, 10_000)
REPEATS = 5
RANGE_START = 20000
TARGET_SECONDS = 1.0


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

    return transaction


def _spokes(count):
    return [{"name": f"lab-pc-{i:05d}"} for i in range(count)]


def _median_time(action, prepare):
    """Median of REPEATS runs of action(); prepare() resets the state before each run."""
    samples = []
    for _repeat in range(REPEATS):
        prepare()
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_size(pr, workdir, count):
    path = str(workdir / f"ports-{count}.json")
    range_end = RANGE_START + 2 * count  # room for the spokes plus whatever listens on the host
    spokes = _spokes(count)

    def reset():
        for suffix in ("", ".bak"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)

    def fill():
        pr.allocate_ports(path=path, spokes=spokes, range_start=RANGE_START, range_end=range_end, prune=True)

    from_empty = _median_time(fill, reset)
    size = os.path.getsize(path)

    full = Path(path).read_bytes()
    plus_one = spokes + [{"name": "lab-pc-new"}]

    def restore_full():
        Path(path).write_bytes(full)

    def add_one():
        result = pr.allocate_ports(
            path=path, spokes=plus_one, range_start=RANGE_START, range_end=range_end, prune=True,
        )
        assert result.added == ["lab-pc-new/ssh"], result.added

    add_time = _median_time(add_one, restore_full)
    size_plus_one = os.path.getsize(path)
    return {"n": count, "from_empty": from_empty, "add_one": add_time, "size": size, "size_plus_one": size_plus_one}


def main():
    pr = _import_registry()
    workdir = Path(tempfile.mkdtemp(prefix="revtunnel-bench-data-"))
    try:
        rows = [bench_size(pr, workdir, count) for count in SIZES]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"port_allocation benchmark (median of {REPEATS} runs, Python {sys.version.split()[0]})")
    print(f"{'spokes':>8} {'from empty':>12} {'add one':>12} {'registry':>12} {'after +1':>12}")
    for row in rows:
        print(
            f"{row['n']:>8,} {row['from_empty'] * 1000:>9.1f} ms {row['add_one'] * 1000:>9.1f} ms "
            f"{row['size']:>8,} B {row['size_plus_one']:>10,} B"
        )

    print("\ngrowth between sizes (measured time ratio vs what n and n log n predict):")
    for small, large in zip(rows, rows[1:]):
        n_ratio = large["n"] / small["n"]
        nlogn_ratio = n_ratio * math.log(large["n"]) / math.log(small["n"])
        for label in ("from_empty", "add_one"):
            measured = large[label] / small[label]
            verdict = "within n log n" if measured <= nlogn_ratio * 1.25 else "WORSE than n log n"
            print(
                f"  {label:>10} {small['n']:>6,} -> {large['n']:>6,}: x{measured:6.2f}"
                f"   (n: x{n_ratio:.1f}, n log n: x{nlogn_ratio:.1f})  {verdict}"
            )
        size_ratio = large["size"] / small["size"]
        print(f"  {'size':>10} {small['n']:>6,} -> {large['n']:>6,}: x{size_ratio:6.2f}   (n: x{n_ratio:.1f})")

    largest = rows[-1]
    worst = max(largest["from_empty"], largest["add_one"])
    status = "MET" if worst < TARGET_SECONDS else "MISSED"
    print(
        f"\ntarget: under {TARGET_SECONDS:.0f} s for {largest['n']:,} spokes: {status} "
        f"(slowest run {worst:.3f} s)"
    )
    print("note: small sizes are dominated by fixed costs (fsync, /proc read), so small ratios understate growth")


if __name__ == "__main__":
    main()
