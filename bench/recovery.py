#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Recovery benchmark: seconds from the end of a fault until the hub reads the spoke's SSH banner again.

Two labs side by side in the same run, each a Debian 12 hub and a Debian 12 spoke:
- ours: provisioned by site.yml with the collection's defaults (reaper on the hub);
- baseline: the articles' unit, by hand (ServerAliveInterval=60, ExitOnForwardFailure=yes,
  Restart=always, RestartSec=3) and a hub with no ClientAlive and no reaper.
Each fault hits both labs at once, N times; cuts keep connecting to the stale hub port meanwhile.
Prints median and max per fault and the baseline/ours ratio. A tunnel still down after --timeout s is
"stuck": the baseline lab is then repaired by hand before the next fault.

Run after `make lab`:  python bench/recovery.py [-n 3] [--faults kill_client,cut_link_120] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import sys
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
}
OUR_UNIT = "revtunnel@rt-bench-hub.service"
BASE_UNIT = "articles-tunnel.service"
PORT = 10000
FAULTS = ["kill_client", "restart_hub_sshd", "kill_all_hub_sshd", "restart_hub", "cut_link_20",
          "cut_link_20_new_address", "cut_link_120", "cut_link_120_new_address", "reboot_spoke"]

BASELINE_UNIT = f"""[Unit]
Description=Reverse tunnel as in the articles
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/bin/ssh -NT -i /root/.ssh/tunnel_key -o ServerAliveInterval=60 -o ExitOnForwardFailure=yes \
-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/root/.ssh/hub_known_hosts \
-R {PORT}:localhost:22 tunnel@{LABS['baseline']['hub']}
Restart=always
RestartSec=3

[Install]
WantedBy=multi-user.target
"""


def create():
    faults.docker("network", "rm", NETWORK, check=False)
    faults.docker("network", "create", "--subnet", f"{SUBNET}.0/24", NETWORK)
    for lab in LABS.values():
        _lab.run_container(lab["hub"], NETWORK, f"{SUBNET}.{lab['hub_ip']}")
        _lab.run_container(lab["spoke"], NETWORK, f"{SUBNET}.{lab['spoke_ip']}", net_admin=True)
    for lab in LABS.values():
        faults.wait_booted(lab["hub"])
        faults.wait_booted(lab["spoke"])


def destroy():
    for lab in LABS.values():
        faults.docker("rm", "-f", lab["hub"], lab["spoke"], check=False)
    faults.docker("network", "rm", NETWORK, check=False)


def provision_ours():
    lab = LABS["ours"]
    faults.run_site(ROOT, "all:\n  vars:\n    ansible_connection: community.docker.docker\n  children:\n"
                          f"    hub:\n      hosts:\n        {lab['hub']}:\n"
                          f"    spokes:\n      hosts:\n        {lab['spoke']}:\n"
                          f"          revtunnel_port: {PORT}\n")


def provision_baseline():
    lab = LABS["baseline"]
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
                     f"cat >/etc/systemd/system/{BASE_UNIT} <<'UNIT'\n{BASELINE_UNIT}UNIT\n"
                     f"systemctl daemon-reload && systemctl enable --now {BASE_UNIT}")


def unstick_baseline():
    """Repair the baseline by hand after a stuck fault: end the hub's stale sessions, wait for the tunnel."""
    lab = LABS["baseline"]
    faults.sh(lab["hub"], "for p in $(pgrep -f 'sshd: tunnel'); do kill $p; done; true", check=False)
    if faults.time_to_banner(lab["hub"], PORT, time.time(), 60) is None:
        faults.sh(lab["spoke"], f"systemctl restart {BASE_UNIT}")
        faults.time_to_banner(lab["hub"], PORT, time.time(), 60)


def inflict(fault, name, round_no):
    """Inflict FAULT on lab NAME; return its end time."""
    lab = LABS[name]
    unit = OUR_UNIT if name == "ours" else BASE_UNIT
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
    ended = inflict(fault, name, round_no)
    return faults.time_to_banner(LABS[name]["hub"], PORT, ended, timeout)


def fmt(values, timeout):
    done = [v for v in values if v is not None]
    stuck = len(values) - len(done)
    if not done:
        return f"stuck (>{timeout:.0f} s) x{stuck}"
    text = f"{statistics.median(done):6.2f} / {max(done):6.2f}"
    return text + (f"  stuck x{stuck}" if stuck else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=3, help="times each fault is repeated (default 3)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds after which a tunnel counts as stuck")
    parser.add_argument("--keep", action="store_true", help="leave the containers running afterwards")
    args = parser.parse_args()
    chosen = [f for f in args.faults.split(",") if f]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    _lab.require_image()

    results = {f: {"ours": [], "baseline": []} for f in chosen}
    started = time.time()
    try:
        create()
        provision_ours()
        provision_baseline()
        for name, lab in LABS.items():
            if faults.time_to_banner(lab["hub"], PORT, time.time(), 60) is None:
                sys.exit(f"{name}: the tunnel never came up")
        for round_no in range(args.runs):
            for fault in chosen:
                with ThreadPoolExecutor(2) as pool:
                    took = dict(zip(LABS, pool.map(
                        lambda n, f=fault, r=round_no: measure(f, n, r, args.timeout), LABS)))
                for name, value in took.items():
                    results[fault][name].append(value)
                print(f"round {round_no + 1}/{args.runs} {fault:26s} ours {took['ours']}  baseline {took['baseline']}",
                      file=sys.stderr, flush=True)
                if took["baseline"] is None:
                    unstick_baseline()
                if took["ours"] is None:
                    sys.exit(f"ours stuck after {fault}: " + faults.sh(LABS["ours"]["spoke"],
                                                                       f"journalctl -u {OUR_UNIT} -n 30 --no-pager"))
    finally:
        if not args.keep:
            destroy()

    print(f"\nRecovery after each fault: seconds from its end until the hub reads the spoke's banner "
          f"({args.runs} runs, median / max; hub and spoke Debian 12; {time.time() - started:.0f} s in all)\n")
    print(f"| {'fault':26s} | {'ours':22s} | {'baseline (articles)':26s} | ratio |")
    print(f"|{'-' * 28}|{'-' * 24}|{'-' * 28}|-------|")
    for fault, by_lab in results.items():
        ours = [v for v in by_lab["ours"] if v is not None]
        base = [v for v in by_lab["baseline"] if v is not None]
        if len(base) < len(by_lab["baseline"]):
            ratio = "inf"
        elif ours and base and statistics.median(ours) > 0:
            ratio = f"{statistics.median(base) / statistics.median(ours):.1f}x"
        else:
            ratio = "-"
        print(f"| {fault:26s} | {fmt(by_lab['ours'], args.timeout):22s} | "
              f"{fmt(by_lab['baseline'], args.timeout):26s} | {ratio:>5s} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
