# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Converge benchmark: seconds and tasks of site.yml, this checkout against a baseline commit, in one run.

Two labs, each measured with a first run of site.yml and a re-run (nothing should change then):
- containers: one Debian 12 hub and N Debian 12 spokes running systemd (--spokes, default 3,10,20),
  reached with the community.docker.docker connection like the other benches; the lab's memory
  (docker stats' "used", summed) is read after the first run;
- hub-only: `site.yml --limit <hub>` with one hub container and M inventory spokes that are never
  contacted (--hub-only, default 100,1000,5000; their ansible_host is in 198.18.0.0/15, a range for
  benchmarks). Since 1.2.0 a run that would leave a spoke without its key on the hub fails, so the bench
  first writes the controller's copy of the hub's records for them, with the collection's own code: the
  hub's real host key (read from the new container) and a made-up ed25519 public key and a port per spoke.
  The first run is then a hub rebuilt from nothing that restores M spokes (their ports, keys and the
  tunnel account's authorized_keys); the re-run is what every later run costs. A version without the
  records (1.1.0 and before) ignores the copy: its first run allocates M ports with no key.
Every version's hub keeps its records in a directory of the bench's own (revtunnel_hub_records_dir), so
a re-run finds the copy that the first run wrote, as it would beside a lab's inventory.
Each version (this checkout as it is on disk, and --baseline REF from `git archive` into a temporary
directory with its own collections/ link) runs on freshly created containers, one after the other for
each size. Between sizes the bench prints the marginal cost of one more spoke. Tasks are counted by
bench/callback_plugins/round_trips.py: results (ok, changed, skipped, failed) and the tasks that ran a
module on a host ("on host", each loop item counts), the round trips the work aims to cut.

Run after `make lab`:  python bench/converge.py [--spokes 3] [--hub-only 100] [--baseline REF] [--json out.json]
Figures are noisy on a shared machine: compare versions measured in the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lab  # noqa: E402
from _lab import faults  # noqa: E402

ROOT = _lab.ROOT
NETWORK = "rt-bench-conv"
HUB = "rt-bench-conv-hub"
# 1.0.0 as released, the code before the one-call file installs; ca44265 is the code before 1.0.0's registry work.
DEFAULT_BASELINE = "7151b57"
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"
# The lead's targets (seconds); hub-only 5,000 is judged against 5x the same version's 1,000 figure.
TARGETS = {("containers", 3, "first"): 40, ("containers", 3, "rerun"): 20, ("containers", 20, "rerun"): 40,
           ("hub-only", 1000, "rerun"): 30}
PHASES = ("first", "rerun")


def spoke(i):
    return f"rt-bench-conv-s{i:02d}"


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def default_baseline():
    return DEFAULT_BASELINE if git("rev-parse", "--verify", "-q", f"{DEFAULT_BASELINE}^{{commit}}").returncode == 0 \
        else "HEAD~1"


def describe(ref):
    out = git("rev-parse", "--short", ref)
    if out.returncode != 0:
        sys.exit(f"--baseline {ref}: not a commit of this repository ({out.stderr.strip()})")
    return out.stdout.strip()


def checkout(ref, directory):
    """REF's files in DIRECTORY, usable as the collection hubspoke.revtunnel like a checkout after `make venv`."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)
    link = directory / "collections" / "ansible_collections" / "hubspoke" / "revtunnel"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(directory)
    return directory


def destroy(spokes=30):
    names = [HUB, *(spoke(i) for i in range(1, spokes + 1))]
    existing = set(faults.docker("ps", "-a", "--format", "{{.Names}}", check=False).split())
    gone = [n for n in names if n in existing]
    if gone:
        faults.docker("rm", "-f", *gone, check=False, timeout=300)
    faults.docker("network", "rm", NETWORK, check=False)


def create(containers):
    destroy()
    faults.docker("network", "create", NETWORK)
    for name in containers:
        _lab.run_container(name, NETWORK)
    for name in containers:
        faults.wait_booted(name, limit=180.0)


def inventory(kind, size, records, ssh=None):
    """The lab's inventory, the hub's records in RECORDS; with SSH ({container: address, "key": key file}) Ansible
    logs in as root by ssh."""
    def host(name):
        return f"        {name}:\n" + (f"          ansible_host: {ssh[name]}\n" if ssh else "") + \
            (f"          revtunnel_hub_records_dir: {records}\n" if name == HUB else "")
    if ssh:
        connection = ("    ansible_connection: ssh\n    ansible_user: root\n"
                      f"    ansible_ssh_private_key_file: {ssh['key']}\n"
                      "    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null\n")
    else:
        connection = "    ansible_connection: community.docker.docker\n"
    if kind == "containers":
        hosts = "".join(host(spoke(i)) for i in range(1, size + 1))
        return (f"all:\n  vars:\n{connection}  children:\n"
                f"    hub:\n      hosts:\n{host(HUB)}    spokes:\n      hosts:\n{hosts}")
    # Enough ports for 5,000 spokes at every size, so the sizes differ in the spokes alone.
    hosts = "".join(f"        {fake(i)}: {{ansible_host: 198.18.{i // 250}.{i % 250 + 1}}}\n" for i in range(size))
    return (f"all:\n  vars:\n{connection}  children:\n"
            f"    hub:\n      hosts:\n{host(HUB)}"
            "      vars:\n        revtunnel_port_range_start: 10000\n        revtunnel_port_range_end: 19999\n"
            f"    spokes:\n      hosts:\n{hosts}")


def fake(i):
    return f"fake-{i:05d}"


def seed_records(records, size):
    """The controller's copy of the hub's records for SIZE inventory spokes that are never contacted.

    The hub's own new host key (so restoring it changes nothing sshd sees), one made-up public key and one
    port per spoke, in the range the inventory gives the hub.
    """
    end = time.time() + 60
    while not faults.sh(HUB, "cat /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null || true"):
        if time.time() > end:
            sys.exit(f"{HUB}: no host key 60 s after boot")
        time.sleep(0.2)
    pair = (faults.sh(HUB, "cat /etc/ssh/ssh_host_ed25519_key") + "\n",
            faults.sh(HUB, "cat /etc/ssh/ssh_host_ed25519_key.pub"))
    spokes = {fake(i): {"ports": {"ssh": 10000 + i}, "keys": [_lab.fake_public_key(fake(i))], "key_from": []}
              for i in range(size)}
    _lab.write_hub_records(records, HUB, spokes, {"start": 10000, "end": 19999}, host_key=pair)


def ssh_access(containers, directory):
    """Let the controller log in as root with a fresh key; each container's address and the key file."""
    key = Path(directory) / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().strip()
    access = {"key": str(key)}
    for name in containers:
        faults.sh(name, f"mkdir -p -m 0700 /root/.ssh && echo '{public}' >>/root/.ssh/authorized_keys")
        access[name] = faults.address(name, NETWORK)
    return access


# With -vvv, each command or file transfer of a connection plugin prints one line like these.
CONNECTION_CALL = re.compile(r"^<[^>]+> (?:SSH: )?(?:EXEC|PUT|FETCH) ", re.MULTILINE)


def machine_cpu_seconds():
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def site(version, inventory_text, extra, timeout, count_calls=False):
    """One timed site.yml run of VERSION: seconds, recap sums, host round trips, slowest tasks or an error."""
    extra = [*extra, "-vvv"] if count_calls else extra
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as directory:
        counts = Path(directory) / "counts.json"
        env = dict(version["env"], ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), BENCH_ROUND_TRIPS_FILE=str(counts))
        started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        busy = machine_cpu_seconds()
        try:
            proc = faults.run_site(version["root"], inventory_text, *extra, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"seconds": None, "timed_out": timeout, "error": f"timeout after {timeout:.0f} s"}
        except OSError as error:
            return {"seconds": None, "error": f"ansible-playbook did not start: {error}"}
        seconds = time.monotonic() - started
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy_after = machine_cpu_seconds()
        # The controller's CPU (ansible-playbook, its workers, their docker or ssh clients): steadier than
        # wall time on a loaded machine, and what a bigger inventory costs the operator's machine.
        cpu_seconds = done.ru_utime + done.ru_stime - cpu.ru_utime - cpu.ru_stime
        found = json.loads(counts.read_text()) if counts.exists() else {"hosts": {}, "slowest_tasks": []}
    # The whole machine's CPU over the run: the controller's plus the containers' (their Python, systemd, the
    # Docker daemon). Near cores x seconds, the run is bound by CPU and fewer calls are what makes it faster.
    machine = None if busy is None or busy_after is None else round(busy_after - busy, 1)
    run = {"seconds": round(seconds, 2), "controller_cpu_seconds": round(cpu_seconds, 2),
           "machine_cpu_seconds": machine, "error": None, "slowest_tasks": found["slowest_tasks"]}
    for key in ("ok", "changed", "skipped", "failures", "unreachable", "remote"):
        run[key] = sum(h.get(key, 0) for h in found["hosts"].values())
    run["results"] = run["ok"] + run["skipped"] + run["failures"] + run["unreachable"]
    run["hub_remote"] = found["hosts"].get(HUB, {}).get("remote", 0)
    if count_calls:
        run["connection_calls"] = len(CONNECTION_CALL.findall(proc.stdout))
    if proc.returncode != 0:
        run["error"] = f"site.yml exited {proc.returncode}: " + (proc.stdout[-3000:] + proc.stderr[-1500:]).strip()
    return run


def measure(version, kind, size, args, keys):
    containers = [HUB] + ([spoke(i) for i in range(1, size + 1)] if kind == "containers" else [])
    create(containers)
    records = tempfile.mkdtemp(prefix="rt-bench-records-")
    try:
        idle = sum(_lab.memory_mib(c) for c in containers)
        if kind == "hub-only":
            seed_records(records, size)
        text = inventory(kind, size, records, ssh_access(containers, keys) if args.connection == "ssh" else None)
        extra = ["--limit", HUB] if kind == "hub-only" else []
        first = site(version, text, extra, args.timeout, args.count_calls)
        used = sum(_lab.memory_mib(c) for c in containers)
        if first["error"] is None:
            rerun = site(version, text, extra, args.timeout, args.count_calls)
        else:
            rerun = {"seconds": None, "error": "first run failed"}
    finally:
        destroy()
        shutil.rmtree(records, ignore_errors=True)
    memory = {"idle": round(idle, 1), "after_first_run": round(used, 1), "containers": len(containers)}
    return {"first": first, "rerun": rerun, "memory_mib": memory}


def fmt_s(run, cpu=False):
    if run and run.get("timed_out"):
        return f"> {run['timed_out']:.0f}"
    if run is None or run.get("seconds") is None:
        return "failed"
    if not cpu:
        return f"{run['seconds']:.1f}"
    machine = run.get("machine_cpu_seconds")
    return f"{run['seconds']:.1f} ({run['controller_cpu_seconds']:.0f}" + \
        ("" if machine is None else f" / {machine:.0f}") + ")"


def marginal(rows, version, phase, kind, size, sizes):
    """Seconds per extra spoke between the previous size and SIZE, for VERSION's PHASE."""
    earlier = [s for s in sizes if s < size]
    if not earlier:
        return None
    prev = max(earlier)
    now, before = rows.get((kind, size, version), {}).get(phase), rows.get((kind, prev, version), {}).get(phase)
    if not now or not before or now.get("seconds") is None or before.get("seconds") is None:
        return None
    return (now["seconds"] - before["seconds"]) / (size - prev)


def target_text(rows, version, kind, size, phase):
    run = rows.get((kind, size, version), {}).get(phase)
    limit = TARGETS.get((kind, size, phase))
    basis = ""
    if kind == "hub-only" and size == 5000 and phase == "rerun":
        ref = rows.get((kind, 1000, version), {}).get(phase)
        if ref and ref.get("seconds") is not None:
            limit, basis = 5 * ref["seconds"], " (5x 1,000)"
    if limit is None:
        return ""
    if not run or run.get("seconds") is None:
        return f"<= {limit:.0f} s{basis}: no figure"
    return f"<= {limit:.0f} s{basis}: {'met' if run['seconds'] <= limit else 'MISSED'}"


def report(rows, versions, kinds, args, started, labels):
    cur = versions[0]["label"]
    # Ratios are against the baseline commit, or against this checkout when only --also variants are measured.
    base = "baseline" if any(v["label"] == "baseline" for v in versions) else cur if len(versions) > 1 else None
    over = "ssh (ansible.cfg's ssh settings)" if args.connection == "ssh" else "the docker connection"
    print(f"\nsite.yml converge times (s), Debian 12 containers over {over}; {labels}; "
          f"{time.time() - started:.0f} s in all\n")
    others = [v["label"] for v in versions]
    head = ["lab", "run"] + [f"{v} s (CPU s: controller / machine)" for v in others] \
        + [f"{base}/{v}" for v in others if base and v != base] \
        + [f"{v} s per extra spoke" for v in others] + [f"{v} tasks: results / on host / changed" for v in others] \
        + [f"target ({cur})"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for kind, sizes in kinds:
        for size in sizes:
            lab = f"1 hub + {size} spokes" if kind == "containers" else f"hub alone, {size:,} inventory spokes"
            for phase in PHASES:
                runs = {v: rows.get((kind, size, v), {}).get(phase) for v in others}
                cells = [lab, "first run" if phase == "first" else "re-run"]
                cells += [fmt_s(runs[v], cpu=True) for v in others]
                for v in others:
                    if base is None or v == base:
                        continue
                    a, b = runs[base], runs[v]
                    if a and b and a.get("seconds") and b.get("seconds"):
                        cells.append(f"{a['seconds'] / b['seconds']:.2f}x")
                    elif a and a.get("timed_out") and b and b.get("seconds"):
                        cells.append(f"> {a['timed_out'] / b['seconds']:.1f}x")
                    else:
                        cells.append("-")
                for v in others:
                    m = marginal(rows, v, phase, kind, size, sizes)
                    cells.append("-" if m is None else f"{m:+.3f}")
                for v in others:
                    r = runs[v]
                    cells.append("-" if not r or "results" not in r else
                                 f"{r['results']} / {r['remote']} / {r['changed']}"
                                 + (f" ({r['connection_calls']} calls)" if "connection_calls" in r else ""))
                cells.append(target_text(rows, cur, kind, size, phase))
                print("| " + " | ".join(cells) + " |")
    for kind, sizes in kinds:
        if kind != "containers":
            continue
        print()
        for size in sizes:
            for v in others:
                mem = rows.get((kind, size, v), {}).get("memory_mib")
                if mem:
                    print(f"Memory, 1 hub + {size} spokes ({v}): {mem['idle']:.0f} MiB booted, "
                          f"{mem['after_first_run']:.0f} MiB after the first run "
                          f"({mem['after_first_run'] / mem['containers']:.0f} MiB per container; docker stats' "
                          "'used', summed)")
    for (kind, size, version), result in rows.items():
        for phase in PHASES:
            if result[phase].get("error"):
                print(f"\n{version}, {kind} {size}, {phase}: {result[phase]['error']}", file=sys.stderr)


def parse_sizes(text):
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def parse_also(text):
    """LABEL:KEY=VALUE,KEY=VALUE -> a version of this checkout with those environment variables."""
    label, _unused, pairs = text.partition(":")
    env = dict(p.split("=", 1) for p in pairs.split(",") if p)
    if not label or not env:
        raise argparse.ArgumentTypeError(f"--also {text}: give LABEL:KEY=VALUE[,KEY=VALUE]")
    return {"label": label, "root": ROOT, "env": env}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spokes", default="3,10,20", help="spoke containers per lab, comma-separated "
                                                            "(default 3,10,20; '' for none)")
    parser.add_argument("--hub-only", default="100,1000,5000", help="inventory spokes for the hub-alone runs "
                                                                    "(default 100,1000,5000; '' for none)")
    parser.add_argument("--skip-containers", action="store_true", help="no runs with spoke containers")
    parser.add_argument("--skip-hub-only", action="store_true", help="no hub-alone runs")
    parser.add_argument("--baseline", default=None, help=f"commit to compare with (default {DEFAULT_BASELINE} when "
                                                         "this repository has it, else HEAD~1)")
    parser.add_argument("--no-baseline", action="store_true", help="measure this checkout only")
    parser.add_argument("--also", type=parse_also, action="append", default=[], metavar="LABEL:KEY=VALUE,...",
                        help="also measure this checkout with these environment variables "
                             "(e.g. pipelining:ANSIBLE_PIPELINING=true); repeatable")
    parser.add_argument("--connection", choices=("docker", "ssh"), default="docker",
                        help="how Ansible reaches the containers: community.docker.docker (default), or ssh as "
                             "root to their addresses (ansible.cfg's ssh settings, ControlPersist included)")
    parser.add_argument("--count-calls", action="store_true",
                        help="run site.yml with -vvv and count the connection plugin's commands and file transfers "
                             "(slower with thousands of inventory spokes)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds after which one site.yml run counts as failed (default 1800)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE ('-': stdout)")
    args = parser.parse_args()
    kinds = []
    if not args.skip_containers and parse_sizes(args.spokes):
        kinds.append(("containers", parse_sizes(args.spokes)))
    if not args.skip_hub_only and parse_sizes(args.hub_only):
        kinds.append(("hub-only", parse_sizes(args.hub_only)))
    if max([s for k, sizes in kinds if k == "containers" for s in sizes] or [0]) > 30:
        parser.error("at most 30 spoke containers")
    _lab.require_image()
    _lab.require_inotify(1 + max([s for k, sizes in kinds if k == "containers" for s in sizes] or [0]))

    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
    head = describe("HEAD")
    versions = [{"label": "current", "root": ROOT, "env": {}}, *args.also]
    labels = f"current = this checkout ({head}{', with uncommitted changes' if dirty else ''})"
    started = time.time()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="rt-bench-baseline-") as directory, \
            tempfile.TemporaryDirectory(prefix="rt-bench-keys-") as keys:
        if not args.no_baseline:
            ref = args.baseline or default_baseline()
            versions.append({"label": "baseline", "root": checkout(describe(ref), Path(directory)), "env": {}})
            labels += f", baseline = {ref} ({describe(ref)})"
        for extra in args.also:
            labels += f", {extra['label']} = current with {' '.join(f'{k}={v}' for k, v in extra['env'].items())}"
        try:
            for kind, sizes in kinds:
                for n, size in enumerate(sizes):
                    # Alternate which version goes first, so a drift of the machine's load spreads over both.
                    for version in (versions if n % 2 == 0 else versions[::-1]):
                        print(f"{kind} {size}: {version['label']} ...", file=sys.stderr, flush=True)
                        result = measure(version, kind, size, args, keys)
                        rows[(kind, size, version["label"])] = result
                        print(f"  first {fmt_s(result['first'])} s, re-run {fmt_s(result['rerun'])} s, "
                              f"memory {result['memory_mib']['after_first_run']:.0f} MiB",
                              file=sys.stderr, flush=True)
        finally:
            destroy()
    report(rows, versions, kinds, args, started, labels)
    if args.json:
        data = {"versions": labels, "seconds_in_all": round(time.time() - started, 1), "cpus": os.cpu_count(),
                "targets": {f"{k} {s} {p}": t for (k, s, p), t in TARGETS.items()},
                "runs": [{"kind": k, "size": s, "version": v, **r} for (k, s, v), r in rows.items()]}
        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    failed = any(r.get(p, {}).get("error") for r in rows.values() for p in PHASES)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
