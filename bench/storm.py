# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reconnect storm: a hub restart with many spokes behind one address, and the seconds until every tunnel is usable.

One Debian 12 hub and one spoke container, both provisioned by site.yml. The spoke container then runs
--spokes more tunnel clients, each with its own key, its own copy of the role's ssh config and its own hub
port. They are spokes of the hub like any other: their keys and ports go into the controller's copy of the
hub's records, written with the collection's own code, and `site.yml --limit <hub>` restores them into the
registry and the tunnel account's authorized_keys (so the reaper and the metrics timer know them too). All
of them reach the hub from the spoke container's one address, as a lab behind one NAT does.

They run under a small supervisor (SWARM below) that retries the way the role's unit does (RestartSec, and
the random wait after a failed attempt only, both read from the rendered unit), not under 1,000 systemd
units: in one container on a small machine, systemd's per-exec sandbox setup (3 mount namespaces per
attempt) takes the whole CPU and measures the container, not the hub (see docs/resilience.md).

The hub container is restarted --restarts times per variant; the bench prints the seconds from the restart
until all tunnels answer with the spoke's banner (polled from the host inside the hub's network namespace,
so the polling costs the hub nothing), how many connections sshd dropped past MaxStartups, the client
attempts, and the CPU seconds of the hub (its container's cgroup; of them sshd's, the reaper's, journald's)
apart from the clients' (the spoke container's cgroup): both share this machine's cores, so only the hub's
figure says what a real hub would do. Once, with every tunnel up, it also prints what a tunnel costs the hub
at rest: memory and file descriptors of the sshd processes per tunnel, the hub's CPU per minute, the
reaper's CPU per round of its session cap and per journal line, and the metrics timer's CPU per round.

Variants: `ours` (the roles' defaults) and any mix of `maxstartups=START:RATE:FULL`, `persource=N|none`,
`jitter=SECONDS` and `kex=ALGORITHM` (the clients' key exchange, e.g. `kex=curve25519-sha256`: what the clients'
post-quantum key generation costs the shared cores) joined by `+` (e.g. `persource=100+jitter=5`);
`maxstartups-default` (sshd's 10:30:100) and `no-jitter` are shorthands.

Run after `make lab`:  python bench/storm.py [--spokes 1000] [--restarts 3] [--variants ours,persource=none]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lab  # noqa: E402
from _lab import ROOT, faults  # noqa: E402

NETWORK = "rt-bench-storm"
HUB, SPOKE = "rt-bench-shub", "rt-bench-sspoke"
FIRST_PORT = 10100
BANNER_PORT = 2222
DEFAULT_VARIANTS = ("ours", "maxstartups-default", "no-jitter")
SHORTHANDS = {"maxstartups-default": "maxstartups=10:30:100", "no-jitter": "jitter=0"}
SETTINGS = {"maxstartups": r"\d+(:\d+:\d+)?", "persource": r"\d+|none", "jitter": r"\d+(\.\d+)?",
            "kex": r"[a-z0-9@.-]+"}
DROPIN = "/etc/ssh/sshd_config.d/10-revtunnel.conf"
QUIET_SECONDS = 60
REAPER_EVERY = 1.0  # revtunnel-reaper's --cap-every default: one look a second at the sessions and the guard

# Runs on the spoke: keep one ssh client per config file up, retrying like the role's unit; the number of
# attempts so far is kept in /root/swarm.attempts.
SWARM = r"""
import asyncio, glob, os, random, sys, time
restart, jitter, ramp = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
kex = ["-o", "KexAlgorithms=" + sys.argv[4]] if len(sys.argv) > 4 else []
attempts = 0

async def tunnel(config):
    global attempts
    failed = False
    # The first attempts are spread over RAMP seconds: the lab comes up without a storm of its own.
    await asyncio.sleep(random.uniform(0, ramp))
    while True:
        if failed and jitter:
            await asyncio.sleep(random.uniform(0, jitter))
        started = time.monotonic()
        attempts += 1
        proc = await asyncio.create_subprocess_exec(
            "setpriv", "--reuid=revtunnel", "--regid=revtunnel", "--init-groups",
            "ssh", "-F", config, "-E", "/dev/null", *kex, "-NT", "revtunnel-hub")
        await proc.wait()
        # A client that ran a while had its tunnel: the next attempt goes at once, as in the unit.
        failed = time.monotonic() - started < 3
        await asyncio.sleep(restart)

async def count():
    while True:
        with open("/root/swarm.attempts.tmp", "w") as out:
            out.write(str(attempts))
        os.rename("/root/swarm.attempts.tmp", "/root/swarm.attempts")
        await asyncio.sleep(0.5)

async def main():
    await asyncio.gather(count(), *(tunnel(c) for c in sorted(glob.glob("/etc/revtunnel/s*.ssh_config"))))

asyncio.run(main())
"""

# Runs on the spoke: what each simulated spoke's forward leads to. A real spoke's forward leads to its own sshd on
# its own machine; one sshd here would have to fork for the banner checks of every simulated spoke at once (the
# metrics timer, the reaper, the bench), and its connect timeouts would measure the spoke container, not the hub.
BANNER = r"""
import asyncio

async def spoke(reader, writer):
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 bench-spoke\r\n")
    try:
        await writer.drain()
        while await reader.read(4096):
            pass
    except OSError:
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(spoke, "127.0.0.1", BANNER_PORT, backlog=4096)
    await server.serve_forever()

asyncio.run(main())
"""

# Runs on the hub: the metrics timer's own command, with a scratch state and output, and the CPU seconds it took.
METRICS_ROUND = r"""
import json, resource, shlex, subprocess, sys
argv = shlex.split(sys.argv[1])
for flag, value in (("--state", "/tmp/bench-metrics-state.json"), ("--output", "/tmp/bench-metrics.prom")):
    argv[argv.index(flag) + 1] = value
subprocess.run([a for a in argv if a != "--if-dir-exists"], check=True, stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu": usage.ru_utime + usage.ru_stime}))
"""


def load():
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def exec_input(container, command, data, timeout=600):
    """Run COMMAND in CONTAINER with DATA on its stdin: no command line limit on what DATA holds."""
    proc = subprocess.run(["docker", "exec", "-i", container, "sh", "-c", command], input=data, text=True,
                          capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} in {container} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def destroy():
    faults.docker("rm", "-f", HUB, SPOKE, check=False)
    faults.docker("network", "rm", NETWORK, check=False)


def inventory(records, count):
    """The lab: the hub, its one real spoke and COUNT simulated spokes that the hub's run alone never contacts."""
    fake = "".join(f"        s{i:04d}: {{ansible_host: 198.18.{i // 250}.{i % 250 + 1}}}\n" for i in range(count))
    return ("all:\n  vars:\n    ansible_connection: community.docker.docker\n  children:\n"
            f"    hub:\n      hosts:\n        {HUB}:\n"
            f"          revtunnel_hub_records_dir: {records}\n"
            f"          revtunnel_port_range_start: 10000\n"
            f"          revtunnel_port_range_end: {FIRST_PORT + count + 99}\n"
            f"    spokes:\n      hosts:\n        {SPOKE}:\n{fake}")


def ports_of(count):
    return [FIRST_PORT + i for i in range(count)]


def add_spokes(count, records):
    """COUNT more tunnels in the spoke container, each with its own key, config and port, restored into the hub.

    Returns the ports and the seconds `site.yml --limit <hub>` took to restore them from the controller's copy.
    """
    names = [f"s{i:04d}" for i in range(count)]
    ports = ports_of(count)
    exec_input(SPOKE, "sh -s", f"""set -e
mkdir -p /var/lib/revtunnel/keys
for i in $(seq 0 {count - 1}); do
  n=$(printf 's%04d' $i); p=$(({FIRST_PORT} + i))
  [ -e /var/lib/revtunnel/keys/$n ] || ssh-keygen -q -t ed25519 -N '' -C "revtunnel $n" -f /var/lib/revtunnel/keys/$n
  sed -e "s|IdentityFile .*|IdentityFile /var/lib/revtunnel/keys/$n|" \\
      -e "/RemoteForward/d" /etc/revtunnel/{HUB}.ssh_config >/etc/revtunnel/$n.ssh_config
  echo "    RemoteForward localhost:$p localhost:{BANNER_PORT}" >>/etc/revtunnel/$n.ssh_config
done
chown -R revtunnel:revtunnel /var/lib/revtunnel/keys
""", timeout=1200)
    keys = faults.sh(SPOKE, "cat /var/lib/revtunnel/keys/s*.pub").splitlines()
    _lab.write_hub_records(records, HUB, {
        n: {"ports": {"ssh": p}, "keys": [" ".join(k.split()[:2])], "key_from": []}
        for n, p, k in zip(names, ports, keys)}, None)
    started = time.monotonic()
    faults.run_site(ROOT, inventory(records, count), "--limit", HUB, timeout=1200)
    took = time.monotonic() - started
    held = json.loads(faults.sh(HUB, "cat /var/lib/revtunnel/ports.json"))["spokes"]
    missing = [n for n in names if not held.get(n, {}).get("keys")]
    if missing:
        sys.exit(f"the hub's run did not restore {len(missing)} simulated spokes, e.g. {missing[:3]}")
    return ports, took


def start_swarm(jitter, count, kex=None):
    """(Re)start the supervisor of COUNT simulated spokes, with the unit's RestartSec and JITTER seconds (and the
    clients' key exchange KEX instead of ssh's default)."""
    # The supervisor runs in its own process group: end it and its clients by that group's id.
    faults.sh(SPOKE, "[ -s /root/swarm.pid ] && kill -- -$(cat /root/swarm.pid); rm -f /root/swarm.pid; true",
              check=False)
    unit = faults.sh(SPOKE, f"systemctl cat revtunnel@{HUB}.service")
    restart = faults.sh(SPOKE, f"systemctl show -p RestartUSec --value revtunnel@{HUB}.service")
    restart_s = float(restart[:-2]) / 1000 if restart.endswith("ms") else float(restart.rstrip("s"))
    if jitter is None:
        jitter = int(re.search(r"shuf -i 0-(\d+)", unit).group(1)) / 1000
    exec_input(SPOKE, "cat >/root/swarm.py", SWARM)
    exec_input(SPOKE, "cat >/root/banner.py", BANNER.replace("BANNER_PORT", str(BANNER_PORT)))
    faults.sh(SPOKE, "[ -s /root/banner.pid ] && kill -0 $(cat /root/banner.pid) 2>/dev/null || { setsid "
                     "python3 /root/banner.py </dev/null >/root/banner.log 2>&1 & echo $! >/root/banner.pid; }")
    faults.sh(SPOKE, f"setsid python3 /root/swarm.py {restart_s} {jitter} {count / 20} {kex or ''} </dev/null "
                     ">/root/swarm.log 2>&1 & "
                     "echo $! >/root/swarm.pid")
    return restart_s, jitter


def attempts():
    return int(faults.sh(SPOKE, "cat /root/swarm.attempts 2>/dev/null || echo 0") or 0)


def parse_variant(text):
    """{"maxstartups", "persource", "jitter"} of a variant's name (only what differs from the defaults)."""
    settings = {}
    for part in SHORTHANDS.get(text, text).split("+"):
        if part == "ours":
            continue
        key, _sep, value = part.partition("=")
        if key not in SETTINGS or not re.fullmatch(SETTINGS[key], value):
            raise argparse.ArgumentTypeError(f"variant {text!r}: {part!r} is not maxstartups=S:R:F, persource=N|none, "
                                             "jitter=SECONDS or kex=ALGORITHM")
        settings[key] = float(value) if key == "jitter" else value
    return settings


def set_variant(settings, count):
    """Put the hub and the spokes in a variant's settings; returns the hub's lines and a function that restores them."""
    current = {key: faults.sh(HUB, f"grep -i '^{key} ' {DROPIN}") for key in ("MaxStartups", "PerSourceMaxStartups")}
    edits = {"MaxStartups": settings.get("maxstartups"), "PerSourceMaxStartups": settings.get("persource")}
    script = " && ".join(f"sed -i 's/^{key} .*/{key} {value}/' {DROPIN}" for key, value in edits.items() if value)
    if script:
        faults.sh(HUB, f"{script} && sshd -t && systemctl reload ssh")
    if "jitter" in settings or "kex" in settings:
        start_swarm(settings.get("jitter"), count, settings.get("kex"))
        up = _lab.all_up(HUB, ports_of(count), time.time(), 900)
        if up["up"] != up["all"]:
            sys.exit(f"only {up['up']} of {up['all']} tunnels came back after the swarm's restart")
    lines = {key: faults.sh(HUB, f"grep -i '^{key} ' {DROPIN}").split(None, 1)[1] for key in current}

    def restore():
        faults.sh(HUB, " && ".join(f"sed -i 's/^{key} .*/{line}/' {DROPIN}" for key, line in current.items())
                  + " && systemctl reload ssh")
        if "jitter" in settings or "kex" in settings:
            start_swarm(None, count)
    return lines, restore


def hub_processes():
    """{kind: [pid, ...]} of the hub's processes that the figures split out, read from the host's /proc."""
    kinds = {"sshd": [], "reaper": [], "journald": [], "sessions": [], "listener": []}
    for pid in _lab.container_pids(HUB):
        command = _lab.proc_command(pid)
        if command.startswith(("sshd:", "/usr/sbin/sshd")):
            kinds["sshd"].append(pid)
            kinds["listener" if "[listener]" in command or command.startswith("/usr/sbin/sshd") else "sessions"] \
                .append(pid)
        elif " reaper " in command or (command.startswith("journalctl") and "--follow" in command):
            kinds["reaper"].append(pid)
        elif command.startswith("/lib/systemd/systemd-journald"):
            kinds["journald"].append(pid)
    return kinds


def hub_cpu():
    """The hub's CPU seconds so far: the whole container, and sshd's, the reaper's and journald's share."""
    kinds = hub_processes()
    found = {kind: sum(_lab.proc_cpu_seconds(p) for p in kinds[kind]) for kind in ("sshd", "reaper", "journald")}
    found["hub"] = _lab.cpu_seconds(HUB)
    return found


def hub_journal_lines():
    """sshd's journal lines of this boot (those the reaper reads), and of them the tunnel logins."""
    out = faults.sh(HUB, "journalctl -b -o cat _UID=0 _COMM=sshd | wc -l; "
                         "journalctl -b -o cat _UID=0 _COMM=sshd | grep -c '^Accepted publickey for tunnel ' || true")
    total, accepted = (int(v) for v in out.split())
    return total, accepted


def dropped(since):
    """Connections sshd dropped past MaxStartups or PerSourceMaxStartups since SINCE (host time).

    OpenSSH 9.2 logs the first drop of each throttling period ("drop connection ... past MaxStartups") and, when
    the period ends, "exited MaxStartups throttling after ..., N connections dropped"; the rest only at VERBOSE.
    """
    out = faults.sh(HUB, f"journalctl -u ssh -o cat --since @{int(since)} | grep 'MaxStartups throttling' || true")
    periods = re.findall(r"exited MaxStartups throttling after \S+, (\d+) connections dropped", out)
    # A period still open counts its first drop.
    return sum(int(n) for n in periods) + max(0, out.count("beginning MaxStartups") - len(periods))


def storm(ports, limit):
    """Restart the hub; the seconds until every port answers, sshd's drops, and who spent the CPU."""
    tried, stopped = attempts(), time.time()
    faults.docker("restart", HUB, timeout=120)
    since = time.time()
    hub_before, spoke_before = _lab.cpu_seconds(HUB), _lab.cpu_seconds(SPOKE)
    result = _lab.all_up(HUB, ports, since, limit)
    spent = hub_cpu()
    result["hub_cpu"] = spent["hub"] - hub_before
    result["hub_cpu_boot"] = hub_before
    result["sshd_cpu"], result["reaper_cpu"], result["journald_cpu"] = \
        spent["sshd"], spent["reaper"], spent["journald"]
    result["clients_cpu"] = _lab.cpu_seconds(SPOKE) - spoke_before
    result["attempts"] = attempts() - tried
    result["drops"] = dropped(stopped)
    result["journal_lines"], result["accepted"] = hub_journal_lines()
    result["load"] = load()
    return result


def listener_cpu():
    """CPU seconds of sshd's listener with the sessions it has reaped: every login that has ended."""
    return sum(_lab.proc_cpu_seconds(p) for p in hub_processes()["listener"])


def login_cost(name, logins=20):
    """sshd's CPU seconds for one login of spoke NAME's key (its line in authorized_keys decides how many lines
    sshd parses first): LOGINS logins without a forward, each ended by the refused session (MaxSessions 0)."""
    before = listener_cpu()
    faults.sh(SPOKE, f"for i in $(seq {logins}); do setpriv --reuid=revtunnel --regid=revtunnel --init-groups "
                     f"ssh -F /etc/revtunnel/{name}.ssh_config -E /dev/null -o ClearAllForwardings=yes revtunnel-hub "
                     "true; done; true", timeout=300)
    time.sleep(1)  # the listener reaps each ended session when its SIGCHLD arrives
    return (listener_cpu() - before) / logins


def at_rest(count):
    """What COUNT tunnels cost the hub at rest: memory, fds, CPU per minute, the reaper's and the metrics' rounds."""
    kinds = hub_processes()
    sessions = kinds["sessions"]
    figures = {"tunnels": count, "session_processes": len(sessions),
               "pss_kib": sum(_lab.proc_pss_kib(p) for p in sessions),
               "fds": sum(_lab.proc_fds(p) for p in sessions),
               "listener_fds": sum(_lab.proc_fds(p) for p in kinds["listener"])}
    # The journal is counted outside the window: journalctl on the hub costs the hub CPU.
    lines_before = hub_journal_lines()[0]
    before = hub_cpu()
    time.sleep(QUIET_SECONDS)  # a quiet minute with every tunnel up: a measurement window, not a wait for state
    after = hub_cpu()
    lines_after = hub_journal_lines()[0]
    figures.update({f"quiet_{kind}_cpu": after[kind] - before[kind] for kind in after})
    figures["quiet_seconds"] = QUIET_SECONDS
    figures["quiet_journal_lines"] = lines_after - lines_before
    # The real spoke's name sorts first: s0000 is line 2 of authorized_keys, the last simulated spoke line COUNT.
    figures["login_sshd_cpu"] = {2: login_cost("s0000"), count: login_cost(f"s{count - 2:04d}")}
    command = faults.sh(HUB, "systemctl show -p ExecStart --value revtunnel-metrics.service")
    argv = re.search(r"argv\[\]=(.*?) ;", command).group(1)
    rounds = [json.loads(faults.docker("exec", HUB, "python3", "-c", METRICS_ROUND, argv, timeout=300))["cpu"]
              for _unused in range(3)]
    figures["metrics_round_cpu"] = statistics.median(rounds)
    return figures


def print_report(args, rows, variants, rest, setup):
    print(f"\nReconnect storm: {args.spokes} tunnels from one spoke container (one source address; retry "
          f"{setup['restart_s']} s, random wait up to {setup['jitter']} s after a failed attempt), Debian 12 hub "
          f"restarted (docker restart) {args.restarts} times per variant; load average (1/5/15 min) at the start "
          f"{setup['load']}\n")
    print("| variant | MaxStartups / PerSource | all usable again (s): median / max | half (s) | "
          "sshd drops past MaxStartups | client attempts | hub CPU s (sshd / reaper / journald) | clients' CPU s "
          "| load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in variants:
        results = [r for v, r in rows if v == name]
        if not results:
            continue
        last = [r["last"] if r["up"] == r["all"] else float("inf") for r in results]
        half = [r["half"] for r in results if r["half"] is not None]

        def med(key, res=results):
            return statistics.median(r[key] for r in res)
        print(f"| {name} | {results[0]['settings']} | {statistics.median(last):.1f} / {max(last):.1f} | "
              f"{statistics.median(half) if half else float('nan'):.1f} | {med('drops'):.0f} | "
              f"{med('attempts'):.0f} | {med('hub_cpu'):.1f} ({med('sshd_cpu'):.1f} / {med('reaper_cpu'):.1f} / "
              f"{med('journald_cpu'):.1f}) | {med('clients_cpu'):.1f} | {results[-1]['load']} |")
    per_line = [r["reaper_cpu"] / r["journal_lines"] for _v, r in rows if r["journal_lines"]]
    per_login = [r["reaper_cpu"] / r["accepted"] for _v, r in rows if r["accepted"]]
    if per_line:
        print(f"\nReaper during the storms: {statistics.median(per_line) * 1000:.2f} ms CPU per sshd journal line, "
              f"{statistics.median(per_login) * 1000:.2f} ms per tunnel login (its CPU from the hub's boot until "
              "every tunnel was up, over the lines it read: the host's whole boot, which containers share)")
    if setup["restore_s"] is not None:
        print(f"Restoring the {args.spokes} simulated spokes from the controller's copy: site.yml --limit <hub> "
              f"{setup['restore_s']:.1f} s")
    if rest is None:
        return
    n = rest["tunnels"]
    print(f"\nAt rest with {n} tunnels up: sshd sessions {rest['session_processes']} processes "
          f"({rest['session_processes'] / n:.1f} per tunnel), {rest['pss_kib'] / n:.0f} KiB PSS and "
          f"{rest['fds'] / n:.1f} file descriptors per tunnel (the listener holds {rest['listener_fds']})"
          + ("" if setup["per_tunnel_kib"] is None else
             f"; hub container memory {setup['per_tunnel_kib']:.0f} KiB per tunnel (anonymous memory with the "
             "tunnels minus without)"))
    minute = 60 / rest["quiet_seconds"]
    print(f"Hub CPU at rest: {rest['quiet_hub_cpu'] * minute:.2f} s per minute in all (sshd "
          f"{rest['quiet_sshd_cpu'] * minute:.2f}, reaper {rest['quiet_reaper_cpu'] * minute:.2f}, journald "
          f"{rest['quiet_journald_cpu'] * minute:.2f}); the reaper's look (every {REAPER_EVERY:.0f} s: session cap "
          f"and guard): {rest['quiet_reaper_cpu'] / (rest['quiet_seconds'] / REAPER_EVERY) * 1000:.1f} ms per round, "
          f"{rest['quiet_reaper_cpu'] / (rest['quiet_seconds'] / REAPER_EVERY) / n * 1e6:.0f} us per tunnel")
    print("sshd CPU per login, by the key's line in authorized_keys (sshd parses every line before it): "
          + ", ".join(f"line {line}: {cpu * 1000:.1f} ms" for line, cpu in rest["login_sshd_cpu"].items()))
    print(f"Metrics timer: {rest['metrics_round_cpu'] * 1000:.0f} ms CPU per round "
          f"({rest['metrics_round_cpu'] / n * 1e6:.0f} us per spoke)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spokes", type=int, default=200, help="simulated spokes (default 200)")
    parser.add_argument("--restarts", type=int, default=3, help="hub restarts per variant (default 3)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated variants (default {','.join(DEFAULT_VARIANTS)}; see the docstring)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for all tunnels")
    parser.add_argument("--keep", action="store_true", help="leave the containers running afterwards")
    parser.add_argument("--skip-rest", action="store_true", help="no figures of the hub at rest (saves 2 minutes)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the lab a --keep run left (same --spokes), without provisioning it again")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    try:
        settings = {v: parse_variant(v) for v in variants}
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    _lab.require_image()

    rows, setup = [], {"load": load(), "restore_s": None, "per_tunnel_kib": None}
    try:
        if args.reuse:
            ports = ports_of(args.spokes)
            faults.docker("start", HUB, SPOKE)
            held = json.loads(faults.sh(HUB, "cat /var/lib/revtunnel/ports.json"))["spokes"]
            if len(held) != args.spokes + 1:
                sys.exit(f"--reuse: the hub holds {len(held)} spokes, not {args.spokes} simulated and the real one")
        else:
            with tempfile.TemporaryDirectory(prefix="rt-bench-storm-") as records:
                destroy()
                faults.docker("network", "create", NETWORK)
                # The reaper reads the tunnel sessions' fds with CAP_SYS_PTRACE, as on a real hub (Docker drops it).
                _lab.run_container(HUB, NETWORK, caps=("SYS_PTRACE",))
                _lab.run_container(SPOKE, NETWORK)
                faults.wait_booted(HUB)
                faults.wait_booted(SPOKE)
                faults.run_site(ROOT, inventory(records, 0))
                before = _lab.memory_mib(HUB, "anon")
                ports, setup["restore_s"] = add_spokes(args.spokes, records)
        setup["restart_s"], setup["jitter"] = start_swarm(None, len(ports))
        warm = _lab.all_up(HUB, ports, time.time(), 900)
        if warm["up"] != len(ports):
            sys.exit(f"only {warm['up']} of {len(ports)} tunnels came up at the start")
        print(f"all {len(ports)} tunnels up at the start after {warm['last']:.1f} s (load {load()})",
              file=sys.stderr, flush=True)
        if not args.reuse:
            time.sleep(3)  # let the hub settle before reading its memory (a reading, not an assertion)
            setup["per_tunnel_kib"] = (_lab.memory_mib(HUB, "anon") - before) / len(ports) * 1024
        rest = None if args.skip_rest else at_rest(len(ports) + 1)
        print(f"at rest: {rest}", file=sys.stderr, flush=True)
        for variant in variants:
            lines, restore = set_variant(settings[variant], len(ports))
            described = f"{lines['MaxStartups']} / {lines['PerSourceMaxStartups']}" + (
                f", jitter {settings[variant]['jitter']:g} s" if "jitter" in settings[variant] else "") + (
                f", clients' kex {settings[variant]['kex']}" if "kex" in settings[variant] else "")
            try:
                for n in range(args.restarts):
                    result = storm(ports, args.timeout)
                    result["settings"] = described
                    rows.append((variant, result))
                    print(f"{variant:20s} restart {n + 1}: {result}", file=sys.stderr, flush=True)
            finally:
                restore()
    finally:
        # The clients stop either way: a kept lab must not go on loading the machine.
        faults.sh(SPOKE, "[ -s /root/swarm.pid ] && kill -- -$(cat /root/swarm.pid); rm -f /root/swarm.pid; true",
                  check=False)
        if not args.keep:
            destroy()
    print_report(args, rows, variants, rest, setup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
