# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the Docker lab benchmarks share: systemd containers and their memory.

The docker CLI wrappers and site.yml's runner live in the resilience scenario's faults.py, which the
molecule scenario uses too; this module adds only what the benches alone need.
"""

from __future__ import annotations

import re
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


def run_container(name, network, address=None, net_admin=False, image=IMAGE):
    """(Re)start NAME running systemd, with the only flags systemd accepts on this kind of host (no --privileged)."""
    faults.docker("rm", "-f", name, check=False)
    faults.docker("run", "-d", "--name", name, "--hostname", name, "--cap-add", "SYS_ADMIN",
                  *(["--cap-add", "NET_ADMIN"] if net_admin else []), "--security-opt", "seccomp=unconfined",
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
