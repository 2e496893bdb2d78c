# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""revtunnel-reaper's look (Reaper.round(): the session cap and the squatter guard) over a generated /proc tree.

The tree holds --sessions tunnel sessions at rest, as a hub holds them: a root monitor ("sshd: tunnel [priv]")
and its unprivileged child holding the forwarded port's listener, 7 fds each; --others other processes; one
LISTEN line per session and one ESTABLISHED line per client in net/tcp; a v2 registry with one key per spoke;
the reaper's book knowing every session. --idle of the sessions hold no listener and are past the grace: both
codes end them at every round (nothing is signalled here), and the bench checks that they end the same pids and
log the same lines.

The same process times the code of this checkout and the code of --before (a git ref, default d633459, the last
before the one-pass look), loaded from `git show` into throwaway modules, round after round on the same tree,
and prints ms per round and the ratio.
No Docker, no root: run it anywhere, e.g. `python bench/reaper_look.py --sessions 1000 --rounds 20`.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROCFS = "plugins/module_utils/_procfs.py"
REAPER = "plugins/plugin_utils/_commands/reaper.py"
HZ = 100
TUNNEL_UID = 997
FIRST_PID, FIRST_PORT = 20000, 10000


def importable(scratch):
    """ansible_collections.hubspoke.revtunnel importable from this checkout (a symlink in SCRATCH)."""
    namespace = scratch / "collections" / "ansible_collections" / "hubspoke"
    namespace.mkdir(parents=True)
    os.symlink(ROOT, namespace / "revtunnel")
    sys.path.insert(0, str(scratch / "collections"))


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def code_of(ref, scratch):
    """(procfs, reaper) modules of REF ('' for this checkout); REF's reaper uses REF's procfs."""
    if not ref:
        from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _procfs
        from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import reaper
        return _procfs, reaper
    found = []
    for path, name in ((PROCFS, "procfs_before"), (REAPER, "reaper_before")):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{path}"], capture_output=True, text=True,
                              check=True).stdout
        (scratch / f"{name}.py").write_text(text)
        found.append(load(name, scratch / f"{name}.py"))
    procfs, reaper = found
    reaper._procfs = procfs
    return procfs, reaper


def ed25519_key(n):
    blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + n.to_bytes(4, "big") * 8
    return "ssh-ed25519 " + base64.b64encode(blob).decode("ascii")


def tcp_line(local_port, remote, state, uid, inode, local="0100007F"):
    return (f"   0: {local}:{local_port:04X} {remote} {state} 00000000:00000000 00:00000000 00000000 {uid:5d}        0 "
            f"{inode} 1 0000000000000000 20 4 30 10 -1")


def process(root, pid, comm, title, uid, ticks, ppid=1, fds=()):
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 " + " ".join(["0"] * 8)
                            + f" 20 0 1 0 {ticks} 15000000 1000 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 "
                            "0 0 0 0 0 0 0 0 0 0 0 0 0\n")
    (d / "cmdline").write_bytes(title.encode() + b"\0")
    (d / "status").write_text(f"Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\n"
                              f"PPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    for n, target in enumerate(fds):
        os.symlink(target, d / "fd" / str(n))


def build(root, sessions, others, idle, now):
    """The tree, the registry, and [(pid, ticks, logged_at, key)] of the sessions."""
    btime = int(now) - 86400
    (root / "net").mkdir(parents=True)
    (root / "stat").write_text(f"cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 1\nctxt 2\nbtime {btime}\nprocesses 9\n")
    listen, established, spokes, booked = [], [], {}, []
    for n in range(others):
        uid = 0 if n % 2 else 100 + n
        process(root, 100 + n, f"daemon{n}", f"/usr/sbin/daemon{n} --flag", uid, 100 + n,
                fds=["/dev/null"] * 3 + [f"socket:[{900000 + n}]"])
    for n in range(sessions):
        monitor, child = FIRST_PID + 2 * n, FIRST_PID + 2 * n + 1
        started = now - 3600 + n * 0.5
        ticks = int((started - btime) * HZ)
        listener, client = 100000 + n, 200000 + n
        process(root, monitor, "sshd", "sshd: tunnel [priv]", 0, ticks,
                fds=["/dev/null"] * 3 + [f"socket:[{client}]", f"socket:[{300000 + n}]", f"socket:[{310000 + n}]",
                                         "pipe:[1]"])
        holds = [] if n < idle else [f"socket:[{listener}]"]
        process(root, child, "sshd", "sshd: tunnel", TUNNEL_UID, ticks + 30, ppid=monitor,
                fds=["/dev/null"] * 3 + [f"socket:[{client}]", f"socket:[{320000 + n}]", "pipe:[2]", *holds])
        if holds:
            listen.append(tcp_line(FIRST_PORT + n, "00000000:0000", "0A", TUNNEL_UID, listener))
        established.append(tcp_line(22, f"0C2AD50A:{40000 + n % 20000:04X}", "01", 0, client, local="0A2AD50A"))
        key = ed25519_key(n)
        spokes[f"spoke-{n:04d}"] = {"ports": {"ssh": FIRST_PORT + n}, "keys": [key]}
        booked.append((monitor, ticks, started + 0.3, key, f"spoke-{n:04d}"))
    (root / "net" / "tcp").write_text("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
                                      "   uid  timeout inode\n" + "\n".join(listen + established) + "\n")
    return {"version": 2, "spokes": spokes}, booked


def reaper_on(procfs, reaper, root, registry, booked, document):
    """A Reaper of that code on the tree, its book filled, its signals and lines recorded."""
    args = reaper.parse_args(["--user", "tunnel", "--registry", str(registry), "--authorized-keys",
                              str(root / "none"), "--ports", f"{FIRST_PORT}-{FIRST_PORT + 999}"])
    r = reaper.Reaper(args, proc=procfs.Proc(root, hertz=HZ))
    r.tunnel_uid = TUNNEL_UID
    for pid, ticks, logged_at, key, spoke in booked:
        r.book.record(reaper.Session(pid=pid, user="tunnel", fingerprint=document.key_fingerprint(key),
                                     addr="10.213.42.12", port=40000, start_ticks=ticks, logged_at=logged_at,
                                     spoke=spoke))
    r.done = []
    r.terminate = lambda pid, why, sig=None: r.done.append(("end", pid))
    reaper.log = lambda priority, text: r.done.append((priority, text))
    return r


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--others", type=int, default=40, help="processes that are not sshd")
    parser.add_argument("--idle", type=int, default=5, help="sessions without a listener, past the grace")
    parser.add_argument("--rounds", type=int, default=20)
    # The reaper's last code before its one-pass look (main is the look itself since it was merged).
    parser.add_argument("--before", default="d633459", help="the git ref to compare with (default d633459)")
    args = parser.parse_args(argv)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    scratch = Path(tempfile.mkdtemp(prefix="reaper-look-", dir=base))
    try:
        importable(scratch)
        from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document
        now = time.time()
        root = scratch / "proc"
        spokes, booked = build(root, args.sessions, args.others, args.idle, now)
        registry = scratch / "ports.json"
        registry.write_text(json.dumps(spokes))
        codes = {"before": code_of(args.before, scratch), "now": code_of("", scratch)}
        reapers = {name: reaper_on(*code, root, registry, booked, document) for name, code in codes.items()}
        times = {name: [] for name in reapers}
        for _round in range(args.rounds + 1):
            for name, r in reapers.items():
                r.done.clear()
                codes[name][1].log = lambda priority, text, r=r: r.done.append((priority, text))
                started = time.perf_counter()
                r.round()
                times[name].append(time.perf_counter() - started)
            if reapers["before"].done != reapers["now"].done:
                sys.exit(f"the two codes decided differently:\nbefore {reapers['before'].done}\n"
                         f"now    {reapers['now'].done}")
        ended = sorted({pid for kind, pid in reapers["now"].done if kind == "end"})
        # The first round of each fills its caches: reported apart.
        first = {name: t[0] * 1000 for name, t in times.items()}
        rest = {name: statistics.median(t[1:]) * 1000 for name, t in times.items()}
        print(f"reaper look, {args.sessions} sessions ({args.idle} idle), {args.others} other processes, "
              f"{args.rounds} rounds; before = {args.before}")
        print("| code | first round (ms) | median round after it (ms) |")
        print("|---|---|---|")
        for name in reapers:
            print(f"| {name} | {first[name]:.1f} | {rest[name]:.2f} |")
        print(f"ratio before/now: {rest['before'] / rest['now']:.1f}x per round at rest; same decisions every round "
              f"(sessions ended each round: {len(ended)})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
