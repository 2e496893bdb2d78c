# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What one tunnel login costs in CPU: the hub's sshd and the spoke's ssh, by key exchange and with or without PAM.

One lab container per Debian release runs a scratch sshd on port 2299 (host keys of the image, an ed25519 user
key) and logs in --logins times per variant the way a tunnel does: `ssh -N -R` with a remote forward, ended once it
is in. sshd's CPU is its listener's own and reaped children's (every login's processes, the re-exec included);
the client's is the shell's reaped children's. Both run in the same container on the same cores, one login at a
time, so the two figures do not disturb each other. The reconnect storm (bench/storm.py) says what these costs add
up to for 1,000 spokes; this bench says where they come from.

Run after `make lab`:  python bench/login_cost.py [--logins 40] [--releases 12,13]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lab  # noqa: E402

NAME = "rt-bench-login-cost"
# Runs in the container: sets up the scratch sshd once, then prints "VARIANT SERVER_MS CLIENT_MS" per variant.
SCRIPT = r"""
set -e
logins=$1; shift
mkdir -p /run/sshd /home/bench/.ssh
id bench >/dev/null 2>&1 || useradd -m -s /bin/sh -p '*' bench
[ -f /root/k ] || ssh-keygen -q -t ed25519 -N '' -f /root/k
cp /root/k.pub /home/bench/.ssh/authorized_keys && chown -R bench /home/bench/.ssh
tick=$(getconf CLK_TCK)
for variant in "$@"; do
  kex=${variant%/*}; pam=${variant#*/}
  pkill -f 'sshd -p 2299' || true; sleep 0.3
  /usr/sbin/sshd -p 2299 -o UsePAM=$pam -o PerSourceMaxStartups=none -o MaxStartups=100
  sleep 0.3
  listener=$(pgrep -f 'sshd -p 2299' | head -1)
  server() { awk -v t=$tick '{print ($14+$15+$16+$17)/t}' /proc/$listener/stat; }
  client() { awk -v t=$tick '{print ($16+$17)/t}' /proc/$$/stat; }
  s0=$(server); c0=$(client)
  for i in $(seq $logins); do
    ssh -F /dev/null -i /root/k -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -o KexAlgorithms=$kex -o ExitOnForwardFailure=yes -p 2299 -N -R 127.0.0.1:0:127.0.0.1:22 bench@127.0.0.1 \
        </dev/null & pid=$!
    # In once the forward is up (its listener appears), then ended: the login's whole cost, and nothing idle.
    for _ in $(seq 100); do ss -Hltn 'sport > :1024' | grep -qv ':2299 ' && break; sleep 0.01; done
    kill $pid; wait $pid 2>/dev/null || true
    for _ in $(seq 100); do ss -Hltn 'sport > :1024' | grep -qv ':2299 ' || break; sleep 0.01; done
  done
  s1=$(server); c1=$(client)
  awk -v v=$variant -v a=$s0 -v b=$s1 -v c=$c0 -v d=$c1 -v n=$logins \
      'BEGIN {printf "%s %.1f %.1f\n", v, (b - a) * 1000 / n, (d - c) * 1000 / n}'
done
pkill -f 'sshd -p 2299' || true
"""
KEXES = {"12": ["sntrup761x25519-sha512@openssh.com", "curve25519-sha256"],
         "13": ["mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com", "curve25519-sha256"]}


def measure(release, logins):
    """[(kex, pam, server ms, client ms)] for one Debian release."""
    image = f"revtunnel-lab/debian:{release}"
    _lab.require_image(image)
    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
    subprocess.run(["docker", "run", "-d", "--name", NAME, image, "sleep", "infinity"], capture_output=True, check=True)
    try:
        version = subprocess.run(["docker", "exec", NAME, "ssh", "-V"], capture_output=True, text=True,
                                 check=True).stderr.split(",")[0]
        variants = [f"{kex}/yes" for kex in KEXES[release]] + [f"{KEXES[release][-1]}/no"]
        out = subprocess.run(["docker", "exec", "-i", NAME, "bash", "-s", "--", str(logins), *variants], input=SCRIPT,
                             capture_output=True, text=True, check=True, timeout=60 + logins * 10).stdout
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
    rows = []
    for line in out.splitlines():
        variant, server, client = line.split()
        kex, _sep, pam = variant.partition("/")
        rows.append((version, kex, pam, float(server), float(client)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=40, help="logins per variant (default 40)")
    parser.add_argument("--releases", default="12,13", help="Debian releases of the lab images (default 12,13)")
    args = parser.parse_args()
    print("| OpenSSH | key exchange | UsePAM | hub's sshd CPU per login (ms) | spoke's ssh CPU per login (ms) |")
    print("|---|---|---|---|---|")
    for release in args.releases.split(","):
        rows = measure(release, args.logins)
        baseline = rows[0][4]
        for version, kex, pam, server, client in rows:
            ratio = f"{client / baseline:.2f}x the default's"
            print(f"| {version} | {kex} | {pam} | {server:.1f} | {client:.1f} ({ratio}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
