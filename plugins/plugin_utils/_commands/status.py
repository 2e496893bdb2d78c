# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""revtunnel-status: whether each spoke's tunnel on this hub leads somewhere, now or over a past window.

A port that is bound but leads nowhere shows as down: the ssh forward must answer with an SSH banner,
other forwards must keep the connection open (the probes are in _probe, shared with the modules).
Probes run concurrently, each with one total deadline, so a slow spoke does not hold up the others.

  revtunnel-status [--json]                      a table (or JSON) of every tunnel; exit 1 if one is down
                                                 or squatted (another account than --user holds its port)
  revtunnel-status --prometheus                  the same as node_exporter textfile metrics, on stdout
  revtunnel-status --since 24h [--json]          outages, availability and a timeline per tunnel

The metrics timer records with its own command, revtunnel-metrics. Anything a spoke sends is made printable
before it reaches any output; a registry that cannot be read gets a line that says why (exit 2).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _probe, _procfs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import common, journal, metrics, output

METRICS_UNIT = "revtunnel-metrics.service"
METRICS_IDENTIFIER = "revtunnel-metrics"


def state(row):
    """up, DOWN, or SQUATTED (another account than the tunnel's holds the port)."""
    return "up" if row["up"] else "SQUATTED" if row.get("squatted_by") else "DOWN"


def format_table(rows):
    header = ("SPOKE", "FORWARD", "PORT", "STATE", "LATENCY", "DETAIL")
    lines = [header] + [
        (r["spoke"], r["forward"], str(r["port"]), state(r), f'{r["latency_ms"]:.1f} ms',
         r["detail"]) for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def format_time(when):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def format_seconds(seconds):
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return "".join(shown) or "0s"


def format_history(report, start, end, ascii_only=False):
    """A table of availability per tunnel, a timeline line under each, then its outages."""
    header = ("SPOKE", "FORWARD", "NOW", "AVAILABILITY", "OUTAGES", "DOWN FOR")
    rows = [(r["spoke"], r["forward"], r["now"],
             "-" if r["availability"] is None else f'{r["availability"] * 100:.2f}%',
             str(len(r["outages"])), format_seconds(r["down_seconds"])) for r in report]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    out = [f"{format_time(start)} .. {format_time(end)}   "
           f"timeline: {'#' if ascii_only else metrics.TIMELINE_UP} up  _ down  "
           f"{'x' if ascii_only else metrics.TIMELINE_MIXED} both  (blank) unknown",
           "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for row, entry in zip(rows, report):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        line = entry["timeline"]
        if ascii_only:
            line = "".join(metrics.ASCII_TIMELINE.get(ch, ch) for ch in line)
        out.append(f"  |{line}|")
        for outage in entry["outages"]:
            down = "before the window" if outage["down_at"] is None else format_time(outage["down_at"])
            back = "still down" if outage["up_at"] is None else "up " + format_time(outage["up_at"])
            why = f", {outage['detail']}" if outage["detail"] else ""
            out.append(f"    down {down} -> {back} ({format_seconds(outage['seconds'])}{why})")
    return "\n".join(out)


def show_history(args, spokes):
    end = time.time()
    start = end - metrics.parse_duration(args.since)
    entries = journal.entries(f"_SYSTEMD_UNIT={METRICS_UNIT}", f"SYSLOG_IDENTIFIER={METRICS_IDENTIFIER}",
                              since=start)
    entries = [e for e in journal.from_unit(entries or [], METRICS_UNIT)
               if e.get("SYSLOG_IDENTIFIER") == METRICS_IDENTIFIER]
    tunnels = [(s, f) for s in spokes for f in spokes[s]["ports"]]
    report = metrics.history(entries, start, end, metrics.read_state(args.state), tunnels)
    if args.spoke:
        report = [r for r in report if r["spoke"] in args.spoke]
    for entry in report:
        entry["spoke"], entry["forward"] = _probe.printable(entry["spoke"]), _probe.printable(entry["forward"])
        for outage in entry["outages"]:
            outage["detail"] = _probe.printable(outage["detail"])
    if args.json:
        output.say(json.dumps({"since": start, "until": end, "tunnels": report}, indent=2))
    else:
        encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower()
        output.say(format_history(report, start, end, ascii_only="utf" not in encoding))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="revtunnel-status", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--registry", default=document.DEFAULT_PATH, help="spoke registry (default: %(default)s)")
    parser.add_argument("--spoke", action="append", help="only this spoke (repeatable)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per probe, in total (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=32, help="probes at once (default: %(default)s)")
    parser.add_argument("--user", default="tunnel",
                        help="the tunnel account: a port another account holds is squatted (default: %(default)s)")
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    formats.add_argument("--prometheus", action="store_true",
                         help="print node_exporter textfile metrics (the timer writes them with revtunnel-metrics)")
    parser.add_argument("--hub", default=socket.gethostname(),
                        help="with --prometheus: the hub label of the metrics (default: %(default)s)")
    parser.add_argument("--state", default=metrics.DEFAULT_STATE,
                        help="the timer's up/down state, read only (default: %(default)s)")
    parser.add_argument("--since", help="history over this past window from the journal, e.g. 24h, 90m, 7d")
    args = parser.parse_args(argv)
    if args.since is not None:
        try:
            metrics.parse_duration(args.since)
        except ValueError as exc:
            parser.error(str(exc))
    spokes = common.read_registry(args.registry, "revtunnel-status")
    if spokes is None:
        return 2
    if args.since is not None:
        return show_history(args, spokes)
    probed = {name: entry for name, entry in spokes.items() if not args.spoke or name in args.spoke}
    rows = _probe.check_all(probed, args.timeout, args.workers, owner_uid=_procfs.account_uid(args.user))
    if args.prometheus:
        args.record = False
        sys.stdout.write(metrics.prometheus(args, spokes, rows))
    elif args.json:
        output.say(json.dumps([{**{k: v for k, v in r.items() if k != "seconds"}, "state": state(r).lower()}
                               for r in rows], indent=2))
    else:
        output.say(format_table(rows))
    return 0 if all(r["up"] for r in rows) else 1
