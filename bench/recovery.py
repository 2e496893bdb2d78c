# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Recovery benchmark: seconds from the end of a fault until the hub reads the spoke's SSH banner again.

Three labs side by side in the same run, each a Debian 12 hub and a Debian 12 spoke:
- ours: provisioned by site.yml with the collection's defaults (reaper on the hub, watchdog on the spoke);
- baseline: the articles' unit, by hand (ServerAliveInterval=60, ExitOnForwardFailure=yes,
  Restart=always, RestartSec=3) and a hub with no ClientAlive and no reaper;
- autossh: what the most used autossh roles run, `autossh -M 0` with ServerAliveInterval 30 and
  ServerAliveCountMax 3. The lab image has no autossh and its containers reach no package mirror, so it
  is modelled as what `autossh -M 0` amounts to: plain ssh with those options, restarted by systemd at
  once (Restart=always, RestartSec=1); its hub is configured like the baseline's.
Each fault hits every lab at once, N times; cuts keep connecting to the stale hub port meanwhile.
Prints median and max per fault and the ratio of each other lab to ours. A tunnel still down after
--timeout s is "stuck": that lab is then repaired by hand before the next fault.

busy_cut_S / quiet_cut_S: a connection through the tunnel is held open across an S-second cut (same address, dropped
on the spoke) while the hub reads the spoke's port every 5 s (busy) or not at all (quiet); the row gives the
seconds from the link's return until a new connection through the tunnel reads the spoke's banner, and how many
held connections answered again afterwards ("held 2/3").

survive_cut_S: a connection through the tunnel is open across an S-second cut (same address); the row
gives the seconds from the link's return until the spoke's sshd answered on that same connection, and
"lost" when it did not (closed, reset, or no answer within --timeout s). survive_far_cut_S: the same, the
spoke's packets leaving and getting lost beyond it (only the hub's packets are dropped at the spoke), so
that both ends wait out TCP's retransmission backoff, as on a broken uplink.

rebuilt hub (--rebuilt 3,20): a fourth lab, one hub and N spokes provisioned by site.yml with the controller's
copy of the hub's records in a directory of the bench's own. Each round removes the hub container and creates
it again from the lab image under the same name and address (fresh host keys, nothing of ours), runs
`site.yml --limit <hub>` alone (no spoke is contacted), and gives the seconds from the end of that run until
the hub reads every spoke's banner through its tunnel (0 for a spoke back before the run ended), and the
run's own seconds. The articles' unit and the autossh model have no copy of anything: a rebuilt hub refuses
their spokes (no key) and they refuse it (new host key) until someone reaches each spoke another way, so
they have no row.

Run after `make lab`:  python bench/recovery.py [-n 3] [--faults kill_client,cut_link_120] [--rebuilt 3,20] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lab  # noqa: E402
from _lab import ROOT, faults  # noqa: E402

NETWORK = "rt-bench-net"
SUBNET = "10.213.43"
LABS = {
    "ours": {"hub": "rt-bench-hub", "spoke": "rt-bench-spoke", "hub_ip": 10, "spoke_ip": 20, "moved": 100},
    "baseline": {"hub": "rt-bench-bhub", "spoke": "rt-bench-bspoke", "hub_ip": 11, "spoke_ip": 21, "moved": 150},
    "autossh": {"hub": "rt-bench-ahub", "spoke": "rt-bench-aspoke", "hub_ip": 12, "spoke_ip": 22, "moved": 200},
}
# The rebuilt-hub lab: its hub and up to 30 spokes, on the same network.
REBUILT_HUB, REBUILT_HUB_IP, REBUILT_FIRST_SPOKE_IP = "rt-bench-rhub", 30, 31
REBUILT_TARGETS = {"usable": 30.0, "limit_run": 20.0, "limit_run_spokes": 20}
OUR_UNIT = "revtunnel@rt-bench-hub.service"
BASE_UNIT = "articles-tunnel.service"
PORT = 10000
FAULTS = ["kill_client", "restart_hub_sshd", "kill_all_hub_sshd", "restart_hub", "cut_link_20",
          "cut_link_20_new_address", "cut_link_120", "cut_link_120_new_address", "reboot_spoke",
          "survive_cut_10", "survive_cut_30", "survive_cut_60",
          "survive_far_cut_10", "survive_far_cut_30", "survive_far_cut_60", "busy_cut_60", "quiet_cut_60"]

QUICK_FAULTS = {"kill_client", "restart_hub_sshd", "kill_all_hub_sshd"}

HAND_UNIT = """[Unit]
Description={description}
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/bin/ssh -NT -i /root/.ssh/tunnel_key {options} -o ExitOnForwardFailure=yes \
-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/root/.ssh/hub_known_hosts \
-R {port}:localhost:22 tunnel@{hub}
Restart=always
RestartSec={restart_sec}

[Install]
WantedBy=multi-user.target
"""
HAND_LABS = {
    "baseline": {"description": "Reverse tunnel as in the articles", "options": "-o ServerAliveInterval=60",
                 "restart_sec": 3},
    "autossh": {"description": "Reverse tunnel as autossh -M 0 runs it",
                "options": "-o ServerAliveInterval=30 -o ServerAliveCountMax=3", "restart_sec": 1},
}


def rebuilt_spoke(i):
    return f"rt-bench-r{i:02d}"


def create_network():
    faults.docker("network", "rm", NETWORK, check=False)
    faults.docker("network", "create", "--subnet", f"{SUBNET}.0/24", NETWORK)


def create():
    for lab in LABS.values():
        _lab.run_container(lab["hub"], NETWORK, f"{SUBNET}.{lab['hub_ip']}")
        _lab.run_container(lab["spoke"], NETWORK, f"{SUBNET}.{lab['spoke_ip']}", net_admin=True)
    for lab in LABS.values():
        faults.wait_booted(lab["hub"])
        faults.wait_booted(lab["spoke"])


def destroy(rebuilt=0):
    for lab in LABS.values():
        faults.docker("rm", "-f", lab["hub"], lab["spoke"], check=False)
    if rebuilt:
        faults.docker("rm", "-f", REBUILT_HUB, *(rebuilt_spoke(i) for i in range(1, rebuilt + 1)), check=False,
                      timeout=300)
    faults.docker("network", "rm", NETWORK, check=False)


def provision_ours():
    lab = LABS["ours"]
    faults.run_site(ROOT, "all:\n  vars:\n    ansible_connection: community.docker.docker\n  children:\n"
                          f"    hub:\n      hosts:\n        {lab['hub']}:\n"
                          f"    spokes:\n      hosts:\n        {lab['spoke']}:\n"
                          f"          revtunnel_port: {PORT}\n")


def provision_by_hand(name):
    """The articles' setup (or the autossh model): a key made by hand, one unit, a hub with no ClientAlive."""
    lab = LABS[name]
    hub, spoke = lab["hub"], lab["spoke"]
    faults.sh(spoke, "mkdir -p -m 0700 /root/.ssh && ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/tunnel_key")
    key = faults.sh(spoke, "cat /root/.ssh/tunnel_key.pub")
    faults.sh(hub, "useradd -r -s /usr/sbin/nologin -d /nonexistent tunnel && usermod -p '*' tunnel && "
                   "mkdir -p /etc/ssh/revtunnel && "
                   f"echo 'restrict,port-forwarding,permitlisten=\"localhost:{PORT}\" {key}' "
                   ">/etc/ssh/revtunnel/authorized_keys && "
                   "printf 'Match User tunnel\\n    AuthorizedKeysFile /etc/ssh/revtunnel/authorized_keys\\n"
                   "    AllowTcpForwarding remote\\n    ForceCommand /usr/sbin/nologin\\n'"
                   " >/etc/ssh/sshd_config.d/10-articles.conf && systemctl reload ssh")
    host_key = " ".join(faults.sh(hub, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2])
    faults.sh(spoke, f"echo '{hub} {host_key}' >/root/.ssh/hub_known_hosts && "
                     f"cat >/etc/systemd/system/{BASE_UNIT} <<'UNIT'\n"
                     f"{HAND_UNIT.format(port=PORT, hub=hub, **HAND_LABS[name])}UNIT\n"
                     f"systemctl daemon-reload && systemctl enable --now {BASE_UNIT}")


def rebuilt_inventory(count, records):
    """The rebuilt-hub lab: the hub (its records kept in RECORDS) and COUNT spokes."""
    spokes = "".join(f"        {rebuilt_spoke(i)}:\n" for i in range(1, count + 1))
    return ("all:\n  vars:\n    ansible_connection: community.docker.docker\n  children:\n"
            f"    hub:\n      hosts:\n        {REBUILT_HUB}:\n          revtunnel_hub_records_dir: {records}\n"
            f"    spokes:\n      hosts:\n{spokes}")


def host_key(hub):
    return " ".join(faults.sh(hub, "cat /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null || true").split()[:2])


def rebuild_hub():
    """The hub lost and re-installed: a new container from the lab image, same name and address, fresh host keys."""
    old = host_key(REBUILT_HUB)
    _lab.run_container(REBUILT_HUB, NETWORK, f"{SUBNET}.{REBUILT_HUB_IP}")
    faults.wait_booted(REBUILT_HUB)
    end = time.time() + 60
    while not host_key(REBUILT_HUB):
        if time.time() > end:
            sys.exit(f"{REBUILT_HUB}: no host key 60 s after boot")
        time.sleep(0.2)
    if host_key(REBUILT_HUB) == old:
        sys.exit(f"{REBUILT_HUB}: the re-created hub has the old host key; the lab image must make fresh ones")


def measure_rebuilt(sizes, runs, timeout):
    """Rounds of a hub rebuilt from nothing with the spokes of each size: {size: [round, ...]}."""
    results = {}
    spokes = [rebuilt_spoke(i) for i in range(1, max(sizes) + 1)]
    with tempfile.TemporaryDirectory(prefix="rt-bench-records-") as records:
        try:
            _measure_rebuilt(sizes, runs, timeout, records, results)
        finally:
            # The other labs' faults are measured without these containers on the machine.
            faults.docker("rm", "-f", REBUILT_HUB, *spokes, check=False, timeout=300)
    return results


def _measure_rebuilt(sizes, runs, timeout, records, results):
    """Provision each size, then rebuild the hub RUNS times; the rounds go into RESULTS[size]."""
    _lab.run_container(REBUILT_HUB, NETWORK, f"{SUBNET}.{REBUILT_HUB_IP}")
    for i in range(1, max(sizes) + 1):
        _lab.run_container(rebuilt_spoke(i), NETWORK, f"{SUBNET}.{REBUILT_FIRST_SPOKE_IP + i - 1}")
    for name in [REBUILT_HUB, *(rebuilt_spoke(i) for i in range(1, max(sizes) + 1))]:
        faults.wait_booted(name, limit=180.0)
    for size in sorted(sizes):
        inventory = rebuilt_inventory(size, records)
        faults.run_site(ROOT, inventory, timeout=1800)
        registry = json.loads(faults.sh(REBUILT_HUB, "cat /var/lib/revtunnel/ports.json"))["spokes"]
        ports = [entry["ports"]["ssh"] for name, entry in registry.items()]
        if len(ports) != size:
            sys.exit(f"rebuilt hub lab: the registry holds {len(ports)} spokes, not {size}")
        warm = _lab.all_up(REBUILT_HUB, ports, time.time(), 120)
        if warm["up"] != size:
            sys.exit(f"rebuilt hub lab: only {warm['up']} of {size} tunnels came up after site.yml")
        results[size] = []
        for round_no in range(runs):
            rebuild_hub()
            started = time.time()
            run = faults.run_site(ROOT, inventory, "--limit", REBUILT_HUB, timeout=600, check=False)
            ended = time.time()
            if run.returncode != 0:
                sys.exit(f"site.yml --limit {REBUILT_HUB} failed on the rebuilt hub:\n{run.stdout[-3000:]}"
                         f"{run.stderr[-1500:]}")
            back = _lab.all_up(REBUILT_HUB, ports, ended, timeout)
            found = {"run": ended - started, "last": back["last"] if back["up"] == size else None,
                     "half": back["half"], "up": back["up"], "load": "/".join(f"{v:.1f}" for v in os.getloadavg())}
            results[size].append(found)
            print(f"round {round_no + 1}/{runs} rebuilt hub, {size} spokes: {found}", file=sys.stderr, flush=True)


def print_rebuilt(results, timeout):
    print("\nRebuilt hub: the hub container removed and created again from the lab image (fresh host keys, nothing "
          "of ours), then `site.yml --limit <hub>` alone; seconds from the end of that run until the hub reads "
          "every spoke's banner (median / max), and the run's own seconds\n")
    print("| spokes | all usable after the run (s) | half usable (s) | site.yml --limit <hub> (s) | load at the end "
          "| targets |")
    print("|---|---|---|---|---|---|")
    for size, rounds in sorted(results.items()):
        last = [r["last"] for r in rounds]
        done = [v for v in last if v is not None]
        stuck = len(last) - len(done)
        usable = (f"{statistics.median(done):.2f} / {max(done):.2f}" if done else "") + \
            (f"  stuck (> {timeout:.0f} s) x{stuck}" if stuck else "")
        runs = [r["run"] for r in rounds]
        targets = [f"usable <= {REBUILT_TARGETS['usable']:.0f} s: "
                   f"{'met' if done and not stuck and max(done) <= REBUILT_TARGETS['usable'] else 'MISSED'}"]
        if size == REBUILT_TARGETS["limit_run_spokes"]:
            targets.append(f"run <= {REBUILT_TARGETS['limit_run']:.0f} s: "
                           f"{'met' if max(runs) <= REBUILT_TARGETS['limit_run'] else 'MISSED'}")
        print(f"| {size} | {usable} | {statistics.median(r['half'] for r in rounds):.2f} | "
              f"{statistics.median(runs):.1f} / {max(runs):.1f} | {rounds[-1]['load']} | {'; '.join(targets)} |")


def unstick(name):
    """Repair a hand-made lab after a stuck fault: end the hub's stale sessions, wait for the tunnel."""
    lab = LABS[name]
    faults.sh(lab["hub"], "for p in $(pgrep -f 'sshd: tunnel'); do kill $p; done; true", check=False)
    if faults.time_to_banner(lab["hub"], PORT, time.time(), 60) is None:
        faults.sh(lab["spoke"], f"systemctl restart {BASE_UNIT}")
        faults.time_to_banner(lab["hub"], PORT, time.time(), 60)


def inflict(fault, name, round_no):
    """Inflict FAULT on lab NAME; return its end time."""
    lab = LABS[name]
    unit = OUR_UNIT if name == "ours" else BASE_UNIT
    if fault.startswith(("survive_", "busy_cut_", "quiet_cut_")):
        return None
    if fault == "kill_client":
        return faults.kill_client(lab["spoke"], unit)
    if fault == "restart_hub_sshd":
        return faults.restart_hub_sshd(lab["hub"])
    if fault == "kill_all_hub_sshd":
        return faults.kill_all_hub_sshd(lab["hub"])
    if fault == "restart_hub":
        return faults.restart_hub(lab["hub"])
    if fault == "reboot_spoke":
        return faults.reboot_spoke(lab["spoke"])
    seconds = int(fault.split("_")[2])
    moved = fault.endswith("new_address")
    new_address = f"{SUBNET}.{lab['moved'] + round_no}" if moved else None
    if moved and faults.address(lab["spoke"], NETWORK) == new_address:
        new_address = f"{SUBNET}.{lab['spoke_ip']}"
    return faults.cut_link(lab["spoke"], f"{SUBNET}.{lab['hub_ip']}", seconds, network=NETWORK,
                           new_address=new_address, hub=lab["hub"], port=PORT)


def measure(fault, name, round_no, timeout):
    lab = LABS[name]
    if fault.startswith(("busy_cut_", "quiet_cut_")):
        return faults.busy_cut(lab["spoke"], lab["hub"], f"{SUBNET}.{lab['hub_ip']}", PORT, int(fault.split("_")[-1]),
                               f"{fault}-{round_no}", probe_every=5.0 if fault.startswith("busy_") else None,
                               limit=timeout)
    if fault.startswith("survive_"):
        return faults.survive_cut(lab["spoke"], lab["hub"], f"{SUBNET}.{lab['hub_ip']}", PORT,
                                  int(fault.split("_")[-1]), f"{fault}-{round_no}", far="_far_" in fault,
                                  limit=timeout)
    ended = inflict(fault, name, round_no)
    return faults.time_to_banner(lab["hub"], PORT, ended, timeout)


def fmt(values, timeout, fault=""):
    if values and isinstance(values[0], tuple):
        # (fresh connection, held connection) of a busy or quiet cut
        text = fmt([fresh for fresh, _held in values], timeout)
        return f"{text}, held {sum(held is not None for _fresh, held in values)}/{len(values)}"
    done = [v for v in values if v is not None]
    stuck = len(values) - len(done)
    word = "lost" if fault.startswith("survive_") else "stuck"
    if not done:
        return f"{word} x{stuck}" if word == "lost" else f"stuck (>{timeout:.0f} s) x{stuck}"
    text = f"{statistics.median(done):6.2f} / {max(done):6.2f}"
    return text + (f"  {word} x{stuck}" if stuck else "")


def ratio(ours, other):
    """Median of another lab over ours ('inf' when the other never made it and ours did)."""
    if ours and isinstance(ours[0], tuple):
        ours, other = [fresh for fresh, _held in ours], [fresh for fresh, _held in other]
    mine = [v for v in ours if v is not None]
    theirs = [v for v in other if v is not None]
    if len(theirs) < len(other) and mine:
        return "inf" if not theirs or len(mine) == len(ours) else "-"
    if mine and theirs and statistics.median(mine) > 0:
        return f"{statistics.median(theirs) / statistics.median(mine):.1f}x"
    return "-"


def use_prefix(prefix, subnet):
    """Name the labs' containers and network PREFIX-..., on SUBNET (three octets), beside other benches' labs."""
    global NETWORK, SUBNET, OUR_UNIT
    NETWORK, SUBNET = f"{prefix}-net", subnet
    for lab in LABS.values():
        for role in ("hub", "spoke"):
            lab[role] = lab[role].replace("rt-bench", prefix, 1)
    OUR_UNIT = f"revtunnel@{LABS['ours']['hub']}.service"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=3, help="times each fault is repeated (default 3)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds after which a tunnel counts as stuck")
    parser.add_argument("--rebuilt", default="3,20",
                        help="spokes of the rebuilt-hub rows, comma-separated (default 3,20; '' for none; at most 30)")
    parser.add_argument("--keep", action="store_true", help="leave the containers running afterwards")
    parser.add_argument("--prefix", default="rt-bench", help="containers and network are named PREFIX-... (rt-bench)")
    parser.add_argument("--subnet", default=SUBNET, help=f"the labs' network, three octets ({SUBNET})")
    args = parser.parse_args()
    use_prefix(args.prefix, args.subnet)
    chosen = [f for f in args.faults.split(",") if f]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    rebuilt = [int(v) for v in args.rebuilt.split(",") if v.strip()]
    if any(not 1 <= v <= 30 for v in rebuilt):
        parser.error("--rebuilt: between 1 and 30 spokes")
    _lab.require_image()
    _lab.require_inotify((2 * len(LABS) if chosen else 0) + (1 + max(rebuilt) if rebuilt else 0))

    results = {f: {name: [] for name in LABS} for f in chosen}
    rebuilt_results = {}
    started = time.time()
    print(f"load average at the start: {'/'.join(f'{v:.1f}' for v in os.getloadavg())}", file=sys.stderr)
    try:
        create_network()
        if rebuilt:
            rebuilt_results = measure_rebuilt(rebuilt, args.runs, args.timeout)
        if chosen:
            create()
            provision_ours()
            for name in HAND_LABS:
                provision_by_hand(name)
            for name, lab in LABS.items():
                if faults.time_to_banner(lab["hub"], PORT, time.time(), 60) is None:
                    sys.exit(f"{name}: the tunnel never came up")
            for round_no in range(args.runs):
                for fault in chosen:
                    # A fault that heals in a second is measured one lab at a time: the harness's own `docker exec`s
                    # for the other labs (0.1 s of CPU each) would otherwise compete with the handshake being timed.
                    with ThreadPoolExecutor(1 if fault in QUICK_FAULTS else len(LABS)) as pool:
                        took = dict(zip(LABS, pool.map(
                            lambda n, f=fault, r=round_no: measure(f, n, r, args.timeout), LABS)))
                    for name, value in took.items():
                        results[fault][name].append(value)
                    print(f"round {round_no + 1}/{args.runs} {fault:26s} "
                          + "  ".join(f"{name} {value}" for name, value in took.items()), file=sys.stderr, flush=True)
                    # A lost connection is a result; a tunnel that is not back is repaired before the next fault.
                    up = {name: faults.time_to_banner(LABS[name]["hub"], PORT, time.time(), args.timeout) is not None
                          if fault.startswith(("survive_", "busy_cut_", "quiet_cut_")) else took[name] is not None
                          for name in LABS}
                    if not up["ours"]:
                        journal = faults.sh(LABS["ours"]["spoke"], f"journalctl -u {OUR_UNIT} -n 30 --no-pager")
                        sys.exit(f"ours stuck after {fault}: {journal}")
                    for name in HAND_LABS:
                        if not up[name]:
                            unstick(name)
    finally:
        if not args.keep:
            destroy(max(rebuilt, default=0))

    if rebuilt_results:
        print_rebuilt(rebuilt_results, args.timeout)
    if not chosen:
        return 0
    others = [name for name in LABS if name != "ours"]
    print(f"\nRecovery after each fault: seconds from its end until the hub reads the spoke's banner; survive_*: "
          f"seconds from the link's return until the same connection answered ({args.runs} runs, median / max; "
          f"hub and spoke Debian 12; {time.time() - started:.0f} s in all)\n")
    print(f"| {'fault':26s} | {'ours':22s} | " + " | ".join(f"{name:22s} | {name + ' / ours':>15s}" for name in others)
          + " |")
    print(f"|{'-' * 28}|{'-' * 24}|" + "|".join(f"{'-' * 24}|{'-' * 17}" for _unused in others) + "|")
    for fault, by_lab in results.items():
        print(f"| {fault:26s} | {fmt(by_lab['ours'], args.timeout, fault):22s} | "
              + " | ".join(f"{fmt(by_lab[name], args.timeout, fault):22s} | {ratio(by_lab['ours'], by_lab[name]):>15s}"
                           for name in others) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
