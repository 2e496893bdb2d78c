# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reconnect storm: a hub restart with 200 spokes, and the seconds until every tunnel is usable again.

One Debian 12 hub and one spoke container, both provisioned by site.yml. The spoke container then runs
--spokes more tunnel clients, each with its own key, its own copy of the role's ssh config and its own hub
port, all authorized on the hub the way the hub role writes a spoke's line. They run under a small
supervisor (SWARM below) that retries the way the role's unit does (RestartSec, and the random wait after
a failed attempt only, both read from the rendered unit), not under 200 systemd units: in one container on
a small machine, systemd's per-exec sandbox setup for 200 units (3 mount namespaces per attempt) takes the
whole CPU and measures the container, not the hub (see docs/resilience.md). The hub container is restarted
--restarts times per variant; the bench prints the seconds from the restart until all tunnels answer with
the spoke's banner, how many connections sshd dropped past MaxStartups, and the hub's memory per tunnel
(container memory with and without the tunnels, divided by their number).

Variants: ours (the role's defaults), maxstartups-default (sshd's 10:30:100), no-jitter (retry every
RestartSec with no random wait).

Run after `make lab`:  python bench/storm.py [--spokes 200] [--restarts 3] [--variants ours,no-jitter]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lab  # noqa: E402
from _lab import ROOT, faults  # noqa: E402

NETWORK = "rt-bench-storm"
HUB, SPOKE = "rt-bench-shub", "rt-bench-sspoke"
FIRST_PORT = 10100
VARIANTS = ("ours", "maxstartups-default", "no-jitter")
DROPIN = "/etc/ssh/sshd_config.d/10-revtunnel.conf"

# Runs on the hub: poll every port until each answers with a banner; print a JSON summary.
ALL_UP = r"""
import json, socket, sys, time
since, limit, ports = float(sys.argv[1]), float(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]
waiting, up_at = set(ports), {}
while waiting and time.time() - since < limit:
    for port in sorted(waiting):
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.settimeout(0.5)
                if s.recv(64).startswith(b"SSH-"):
                    up_at[port] = time.time() - since
        except OSError:
            pass
    waiting -= set(up_at)
    time.sleep(0.05)
times = sorted(up_at.values())
print(json.dumps({"up": len(times), "all": len(ports), "last": times[-1] if times else None,
                  "half": times[len(times) // 2] if times else None}))
"""


# Runs on the spoke: keep one ssh client per config file up, retrying like the role's unit.
SWARM = r"""
import asyncio, glob, os, random, sys, time
restart, jitter = float(sys.argv[1]), float(sys.argv[2])

async def tunnel(config):
    failed = False
    while True:
        if failed and jitter:
            await asyncio.sleep(random.uniform(0, jitter))
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "setpriv", "--reuid=revtunnel", "--regid=revtunnel", "--init-groups",
            "ssh", "-F", config, "-E", "/dev/null", "-NT", "revtunnel-hub")
        await proc.wait()
        # A client that ran a while had its tunnel: the next attempt goes at once, as in the unit.
        failed = time.monotonic() - started < 3
        await asyncio.sleep(restart)

async def main():
    await asyncio.gather(*(tunnel(c) for c in sorted(glob.glob("/etc/revtunnel/s*.ssh_config"))))

asyncio.run(main())
"""


def destroy():
    faults.docker("rm", "-f", HUB, SPOKE, check=False)
    faults.docker("network", "rm", NETWORK, check=False)


def provision():
    inventory = ("all:\n  vars:\n    ansible_connection: community.docker.docker\n  children:\n"
                 f"    hub:\n      hosts:\n        {HUB}:\n    spokes:\n      hosts:\n        {SPOKE}:\n")
    faults.run_site(ROOT, inventory)


def add_spokes(count):
    """COUNT more tunnels in the spoke container, each with its own key, config and port, using the role's unit."""
    names = [f"s{i:03d}" for i in range(count)]
    ports = [FIRST_PORT + i for i in range(count)]
    faults.sh(SPOKE, f"""set -e
mkdir -p /var/lib/revtunnel/keys
for i in $(seq 0 {count - 1}); do
  n=$(printf 's%03d' $i); p=$(({FIRST_PORT} + i))
  [ -e /var/lib/revtunnel/keys/$n ] || ssh-keygen -q -t ed25519 -N '' -C "revtunnel $n" -f /var/lib/revtunnel/keys/$n
  sed -e "s|IdentityFile .*|IdentityFile /var/lib/revtunnel/keys/$n|" \
      -e "/RemoteForward/d" /etc/revtunnel/{HUB}.ssh_config >/etc/revtunnel/$n.ssh_config
  echo "    RemoteForward localhost:$p localhost:22" >>/etc/revtunnel/$n.ssh_config
done
chown -R revtunnel:revtunnel /var/lib/revtunnel/keys
""", timeout=600)
    keys = faults.sh(SPOKE, "cat /var/lib/revtunnel/keys/s*.pub").splitlines()
    lines = [f'restrict,port-forwarding,permitlisten="localhost:{p}",permitopen="127.0.0.1:1" '
             f'{" ".join(k.split()[:2])} {n}' for n, p, k in zip(names, ports, keys)]
    faults.sh(HUB, "cat >>/etc/ssh/revtunnel/authorized_keys <<'KEYS'\n" + "\n".join(lines) + "\nKEYS")
    return ports


def start_swarm(jitter):
    """(Re)start the supervisor of the simulated spokes, with the unit's RestartSec and JITTER seconds."""
    # The supervisor runs in its own process group: end it and its clients by that group's id.
    faults.sh(SPOKE, "[ -s /root/swarm.pid ] && kill -- -$(cat /root/swarm.pid); rm -f /root/swarm.pid; true",
              check=False)
    unit = faults.sh(SPOKE, f"systemctl cat revtunnel@{HUB}.service")
    restart = faults.sh(SPOKE, f"systemctl show -p RestartUSec --value revtunnel@{HUB}.service")
    restart_s = float(restart[:-2]) / 1000 if restart.endswith("ms") else float(restart.rstrip("s"))
    if jitter is None:
        jitter = int(re.search(r"shuf -i 0-(\d+)", unit).group(1)) / 1000
    faults.sh(SPOKE, "cat >/root/swarm.py <<'PY'\n" + SWARM + "PY")
    faults.sh(SPOKE, f"setsid python3 /root/swarm.py {restart_s} {jitter} </dev/null >/root/swarm.log 2>&1 & "
                     "echo $! >/root/swarm.pid")
    return restart_s, jitter


def set_variant(variant):
    """Put the hub and the spoke in VARIANT's settings (from the role's defaults)."""
    max_startups = "10:30:100" if variant == "maxstartups-default" else None
    current = faults.sh(HUB, f"grep -i '^MaxStartups' {DROPIN}")
    if max_startups:
        faults.sh(HUB, f"sed -i 's/^MaxStartups .*/MaxStartups {max_startups}/' {DROPIN} && systemctl reload ssh")
    if variant == "no-jitter":
        start_swarm(0.0)

    def restore():
        faults.sh(HUB, f"sed -i 's/^MaxStartups .*/{current}/' {DROPIN} && systemctl reload ssh")
        if variant == "no-jitter":
            start_swarm(None)
    return restore


def storm(ports, limit):
    """Restart the hub; the seconds until every port answers, and sshd's MaxStartups drops."""
    faults.docker("restart", HUB, timeout=120)
    since = time.time()
    out = faults.docker("exec", HUB, "python3", "-c", ALL_UP, str(since), str(limit), ",".join(map(str, ports)),
                        timeout=limit + 120)
    result = json.loads(out)
    result["drops"] = int(faults.sh(HUB, "journalctl -b -u ssh -o cat | grep -c 'past MaxStartups' || true"))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spokes", type=int, default=200, help="simulated spokes (default 200)")
    parser.add_argument("--restarts", type=int, default=3, help="hub restarts per variant (default 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for all tunnels")
    parser.add_argument("--keep", action="store_true", help="leave the containers running afterwards")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):
        parser.error(f"unknown variants: {set(variants) - set(VARIANTS)}")
    _lab.require_image()

    rows = []
    try:
        destroy()
        faults.docker("network", "create", NETWORK)
        _lab.run_container(HUB, NETWORK)
        _lab.run_container(SPOKE, NETWORK)
        faults.wait_booted(HUB)
        faults.wait_booted(SPOKE)
        provision()
        before = _lab.memory_mib(HUB, "anon")
        ports = add_spokes(args.spokes)
        restart_s, jitter = start_swarm(None)
        warm = json.loads(faults.docker("exec", HUB, "python3", "-c", ALL_UP, str(time.time()), "300",
                                        ",".join(map(str, ports)), timeout=420))
        if warm["up"] != len(ports):
            sys.exit(f"only {warm['up']} of {len(ports)} tunnels came up at the start")
        time.sleep(3)  # let the hub settle before reading its memory (a reading, not an assertion)
        per_tunnel = (_lab.memory_mib(HUB, "anon") - before) / len(ports)
        for variant in variants:
            restore = set_variant(variant)
            try:
                for n in range(args.restarts):
                    result = storm(ports, args.timeout)
                    rows.append((variant, result))
                    print(f"{variant:20s} restart {n + 1}: {result}", file=sys.stderr, flush=True)
            finally:
                restore()
    finally:
        if not args.keep:
            destroy()

    print(f"\nReconnect storm: {args.spokes} tunnels from one spoke container (retry {restart_s} s, random wait "
          f"up to {jitter} s after a failed attempt), Debian 12 hub restarted (docker restart) {args.restarts} "
          f"times per variant\n")
    print("| variant | all usable again after (s): median / max | half usable (s) | sshd drops past MaxStartups |")
    print("|---|---|---|---|")
    for variant in variants:
        results = [r for v, r in rows if v == variant]
        last = [r["last"] if r["up"] == r["all"] else float("inf") for r in results]
        half = [r["half"] for r in results if r["half"] is not None]
        drops = [r["drops"] for r in results]
        print(f"| {variant} | {statistics.median(last):.1f} / {max(last):.1f} | "
              f"{statistics.median(half):.1f} | {statistics.median(drops):.0f} |")
    print(f"\nHub memory per tunnel: {per_tunnel * 1024:.0f} KiB "
          f"(container memory with {args.spokes} tunnels minus without, divided by {args.spokes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
