# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the Docker lab benchmarks share: systemd containers and their memory.

The docker CLI wrappers and site.yml's runner live in the resilience scenario's faults.py, which the
molecule scenario uses too; this module adds only what the benches alone need.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "extensions" / "molecule" / "resilience" / "tests"))
import faults  # noqa: E402

IMAGE = "revtunnel-lab/debian:12"


def require_image(image=IMAGE):
    if faults.docker("images", "-q", image) == "":
        sys.exit(f"{image} is missing: run `make lab` first")


# systemd as PID 1 of a lab container holds about 5 inotify instances, counted against root's host-wide limit.
INOTIFY_PER_CONTAINER = 5


def require_inotify(containers):
    """Exit with the fix when the host's inotify limit cannot take CONTAINERS more systemd containers.

    Past the limit, systemd in the newest containers fails its path units or does not start at all.
    """
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    if not path.exists():
        return
    limit = int(path.read_text())
    running = len(faults.docker("ps", "-q").split())
    needed = INOTIFY_PER_CONTAINER * (running + containers) + 32
    if limit < needed:
        sys.exit(f"fs.inotify.max_user_instances={limit} is too low for {containers} more systemd containers beside "
                 f"the {running} running (about {INOTIFY_PER_CONTAINER} each, shared by all of root's processes): "
                 f"run `sysctl -w fs.inotify.max_user_instances={max(1024, needed)}` on the Docker host")


def run_container(name, network, address=None, net_admin=False, image=IMAGE, caps=()):
    """(Re)start NAME running systemd, with the only flags systemd accepts on this kind of host (no --privileged)."""
    faults.docker("rm", "-f", name, check=False)
    faults.docker("run", "-d", "--name", name, "--hostname", name, "--cap-add", "SYS_ADMIN",
                  *(["--cap-add", "NET_ADMIN"] if net_admin else []),
                  *(arg for cap in caps for arg in ("--cap-add", cap)), "--security-opt", "seccomp=unconfined",
                  "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
                  "--tmpfs", "/run/lock", "--network", network, *(["--ip", address] if address else []),
                  image, "/lib/systemd/systemd")


def _cgroup_stat(cid):
    """The container's memory.stat and usage (cgroup v1 under cgroupfs, else v2 under systemd), or None."""
    for directory, usage in ((f"/sys/fs/cgroup/memory/docker/{cid}", "memory.usage_in_bytes"),
                             (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope", "memory.current")):
        path = Path(directory)
        if (path / "memory.stat").exists():
            fields = dict(line.split() for line in (path / "memory.stat").read_text().splitlines())
            return fields, int((path / usage).read_text())
    return None


def memory_mib(container, kind="used"):
    """A container's memory in MiB, read from its cgroup.

    kind "used" is what `docker stats` shows (usage minus inactive file cache); "anon" is anonymous memory
    only (v1 total_rss, v2 anon). docker stats shows 0 B for most containers with this lab's daemon
    (cgroupfs, cgroup v1), hence the cgroup itself; `docker stats` is the fallback.
    """
    cid = faults.docker("inspect", "-f", "{{.Id}}", container)
    found = _cgroup_stat(cid)
    if found:
        fields, usage = found
        if kind == "anon":
            return int(fields.get("total_rss", fields.get("anon", 0))) / 2**20
        inactive = int(fields.get("total_inactive_file", fields.get("inactive_file", 0)))
        return (usage - inactive) / 2**20
    text = faults.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container).split("/")[0].strip()
    match = re.match(r"([\d.]+)\s*([KMG]?i?B)", text)
    if not match:
        return float("nan")
    scale = {"B": 2**-20, "KiB": 2**-10, "MiB": 1, "GiB": 2**10}.get(match.group(2), float("nan"))
    return float(match.group(1)) * scale


def cpu_seconds(container):
    """CPU seconds the container's cgroup has used (cgroup v1 cpuacct under cgroupfs, else v2), or None.

    Read on the host, so the reading itself costs the container nothing. A restarted container gets a new
    cgroup: compare two readings within one run of it only.
    """
    cid = faults.docker("inspect", "-f", "{{.Id}}", container)
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat")
    if v2.exists():
        fields = dict(line.split() for line in v2.read_text().splitlines())
        return int(fields["usage_usec"]) / 1e6
    return None


def container_pids(container):
    """The host pids of every process in the container (its cgroup's cgroup.procs), or [] when unreadable."""
    cid = faults.docker("inspect", "-f", "{{.Id}}", container)
    for path in (Path(f"/sys/fs/cgroup/pids/docker/{cid}"), Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}"),
                 Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope")):
        if (path / "cgroup.procs").exists():
            pids = set()
            # v1 under systemd-in-the-container: the processes sit in sub-cgroups of the container's.
            for procs in path.rglob("cgroup.procs"):
                pids.update(int(p) for p in procs.read_text().split())
            return sorted(pids)
    return []


def proc_cpu_seconds(pid, children=True):
    """A host process's user+system CPU seconds, with those of the children it has reaped (CHILDREN)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_command(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def proc_pss_kib(pid):
    """Proportional set size of a host process in KiB (its shared pages split among their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def records_code():
    """The collection's own records code (module_utils/_records, plugin_utils/_records_files) from this checkout."""
    if str(ROOT / "collections") not in sys.path:
        sys.path.insert(0, str(ROOT / "collections"))
    from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _records
    from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils import _records_files
    return _records, _records_files


def fake_public_key(seed):
    """A well-formed ed25519 public key line whose private half nobody has (for spokes that are never run)."""
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + hashlib.sha256(seed.encode()).digest()
    return "ssh-ed25519 " + base64.b64encode(blob).decode("ascii")


def write_hub_records(directory, hub, spokes, stored_range, host_key=None):
    """Add SPOKES ({name: {"ports", "keys", "key_from"}}) to the controller's copy of HUB's records in DIRECTORY.

    Written with the collection's own code, exactly as a run would have written it. With HOST_KEY (the hub's
    ed25519 (private, public) pair) a new secret file is made first; without it the secret a run wrote is used
    and the spokes are added to the records it wrote. Returns the spokes the copy holds now.
    """
    records, files = records_code()
    directory = str(directory)
    if host_key is not None:
        private, public = host_key
        files.write_secret(None, directory, hub, records.Secret(records.private_key(private, hub),
                                                                " ".join(public.split()[:2]),
                                                                records.new_signing_key()))
    secret = files.read_secret(None, directory, hub)
    if secret is None:
        raise RuntimeError(f"no secret file of {hub} in {directory}: run site.yml on the hub first, or give HOST_KEY")
    held = files.read_records(directory, hub, secret)
    merged = dict(held.spokes if held else {})
    merged.update(spokes)
    data = records.render_records(hub, secret.public_key, merged, stored_range or (held.range if held else None),
                                  "2026-01-01T00:00:00Z", secret.signing_key)
    files.write_records(directory, hub, data)
    return merged


# Runs in a hub's network namespace (nsenter from the host, so the polling costs the hub nothing): poll every
# port (on stdin) until each answers with an SSH banner through its tunnel; print a JSON summary. Each round
# reads which ports listen (/proc/net/tcp of that namespace) and reads the banner of those only, 64 at once.
ALL_UP = r"""
import asyncio, json, sys, time
since, limit = float(sys.argv[1]), float(sys.argv[2])
ports = [int(p) for p in sys.stdin.read().split()]
up_at = {}

def listening():
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if fields[3] == "0A":
                        found.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return found

async def banner(port):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, asyncio.TimeoutError):
        return
    try:
        if (await asyncio.wait_for(reader.read(64), 1.0)).startswith(b"SSH-"):
            up_at[port] = time.time() - since
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()

async def main():
    gate = asyncio.Semaphore(64)

    async def one(port):
        async with gate:
            if time.time() - since < limit:
                await banner(port)
    while len(up_at) < len(ports) and time.time() - since < limit:
        bound = listening()
        await asyncio.gather(*(one(p) for p in ports if p not in up_at and p in bound))
        await asyncio.sleep(0.1)

asyncio.run(main())
times = sorted(max(0.0, t) for t in up_at.values())
print(json.dumps({"up": len(times), "all": len(ports), "last": times[-1] if times else None,
                  "first": times[0] if times else None,
                  "half": times[len(times) // 2] if times else None}))
"""


def all_up(hub, ports, since, limit):
    """Seconds from SINCE (host time) until the hub reads the banner on each of PORTS: up, all, first, half, last.

    A port that answered before SINCE counts as 0 s. Gives up after LIMIT s.
    """
    pid = faults.docker("inspect", "-f", "{{.State.Pid}}", hub)
    out = subprocess.run(["nsenter", "-t", pid, "-n", sys.executable, "-c", ALL_UP, str(since), str(limit)],
                         input="\n".join(map(str, ports)), capture_output=True, text=True, timeout=limit + 120,
                         check=True).stdout
    return json.loads(out)
