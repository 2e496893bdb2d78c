# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""revtunnel-metrics: the metrics timer's recorder, and what it makes of its probes.

Every interval the timer probes each tunnel (status.check), writes node_exporter textfile metrics atomically,
keeps the up/down state between runs and logs each transition to the journal: that journal is the history
``revtunnel-status --since`` reads. The functions below the entry point are pure and tested with plain pytest:

- Prometheus text (node_exporter's textfile collector format) with HELP and TYPE lines.
- A small state document ``{"version": 1, "tunnels": {spoke: {forward: {"up": bool, "since": unix s}}},
  "reaper": {"cursor": str, "replaced": {spoke: n}, "second_address": {spoke: n}}}`` that gives each
  tunnel its last change time and keeps the reaper's counters monotonic across journal rotation.
- One journal line per up/down transition (``revtunnel: lab-pc-1/ssh down (no SSH banner)``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs, _probe, _procfs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import common, journal, output

STATE_VERSION = 1

# Reaper journal lines that record a replaced session: the one place this match is defined.
REAPER_REPLACED = re.compile(r"^replaced\b|\breplaces\b")
# Reaper journal lines that record a key in use from a second address while its session is live.
REAPER_SECOND_ADDRESS = re.compile(r"in use from two places|from a second address")
FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]+")
SPOKE_NAMED = re.compile(r"\bspoke (?P<spoke>[A-Za-z0-9_.@-]+)")
UNKNOWN_SPOKE = "unknown"

TRANSITION = re.compile(
    r"^revtunnel: (?P<spoke>[^/\s]+)/(?P<forward>\S+) (?P<state>up|down)(?: \((?P<detail>.*)\))?$")
FIRST_SEEN = "first seen"

TIMELINE_UP, TIMELINE_DOWN, TIMELINE_MIXED, TIMELINE_UNKNOWN = "\u2588", "_", "\u2584", " "
ASCII_TIMELINE = {TIMELINE_UP: "#", TIMELINE_MIXED: "x"}


# --- state between runs -------------------------------------------------------------------------------

def empty_state():
    return {"version": STATE_VERSION, "tunnels": {}, "reaper": {"cursor": None, "replaced": {}, "second_address": {}}}


def load_state(text):
    """The state from the file's text; an empty state when the text is missing or not a state document."""
    state = empty_state()
    try:
        document = json.loads(text) if text else None
    except ValueError:
        return state
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        return state
    for spoke, forwards in (document.get("tunnels") or {}).items():
        if isinstance(forwards, dict):
            state["tunnels"][spoke] = {
                fwd: {"up": bool(v.get("up")), "since": float(v.get("since", 0))}
                for fwd, v in forwards.items() if isinstance(v, dict)}
    reaper = document.get("reaper") or {}
    state["reaper"]["cursor"] = reaper.get("cursor") if isinstance(reaper.get("cursor"), str) else None
    for counter in ("replaced", "second_address"):
        values = reaper.get(counter) or {}
        state["reaper"][counter] = {k: int(v) for k, v in values.items() if isinstance(v, int) and v >= 0}
    return state


def update_tunnels(state, rows, now):
    """Apply one round of probes to the state; returns the transitions as (spoke, forward, up, detail, first).

    A tunnel seen for the first time counts as a transition (``first`` is True): the history then knows
    from when on its state is known. Tunnels that left the registry leave the state.
    """
    before = state["tunnels"]
    after, transitions = {}, []
    for row in rows:
        old = before.get(row["spoke"], {}).get(row["forward"])
        if old is None or old["up"] != row["up"]:
            after.setdefault(row["spoke"], {})[row["forward"]] = {"up": row["up"], "since": now}
            transitions.append((row["spoke"], row["forward"], row["up"], row["detail"], old is None))
        else:
            after.setdefault(row["spoke"], {})[row["forward"]] = old
    state["tunnels"] = after
    return transitions


def transition_line(spoke, forward, up, detail, first=False):
    """The journal line of one transition, with a syslog priority prefix (<4> down, <5> up)."""
    why = FIRST_SEEN if first and up else f"{FIRST_SEEN}, {detail}" if first else None if up else detail
    text = f"revtunnel: {spoke}/{forward} {'up' if up else 'down'}" + (f" ({why})" if why else "")
    return f"<{5 if up else 4}>{text}"


# --- the reaper's counters ----------------------------------------------------------------------------

def reaper_spoke(message, by_fingerprint, spokes):
    """Which spoke a reaper line is about: a named spoke, else its key fingerprint's spoke, else 'unknown'."""
    named = SPOKE_NAMED.search(message)
    if named and named["spoke"] in spokes:
        return named["spoke"]
    for fingerprint in FINGERPRINT.findall(message):
        if fingerprint in by_fingerprint:
            return by_fingerprint[fingerprint]
    return UNKNOWN_SPOKE


def count_reaper(state, entries, by_fingerprint, spokes):
    """Add the reaper's journal entries (parsed JSON, oldest first) to the state's counters and cursor."""
    reaper = state["reaper"]
    for entry in entries:
        message = journal.message(entry)
        for counter, pattern in (("replaced", REAPER_REPLACED), ("second_address", REAPER_SECOND_ADDRESS)):
            if pattern.search(message):
                spoke = reaper_spoke(message, by_fingerprint, spokes)
                reaper[counter][spoke] = reaper[counter].get(spoke, 0) + 1
        if isinstance(entry.get("__CURSOR"), str):
            reaper["cursor"] = entry["__CURSOR"]


# --- Prometheus text ----------------------------------------------------------------------------------

def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels):
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


METRICS = (
    ("revtunnel_tunnel_up", "gauge",
     "Whether the hub reads the spoke's service through the tunnel: 1 up, 0 down (SSH banner for ssh)."),
    ("revtunnel_tunnel_squatted", "gauge",
     "1 when another account than the tunnel's holds the tunnel's port on the hub (label account), else 0."),
    ("revtunnel_tunnel_probe_seconds", "gauge", "Seconds the last probe of the tunnel took."),
    ("revtunnel_tunnel_last_change_timestamp_seconds", "gauge",
     "Unix time at which the tunnel last went up or down (or was first seen)."),
    ("revtunnel_tunnel_sessions_replaced_total", "counter",
     "Older sessions of the spoke's key that revtunnel-reaper replaced by a newer login."),
    ("revtunnel_key_second_address_total", "counter",
     "Logins of the spoke's key from a second address while its session was live (reaper warnings)."),
    ("revtunnel_spokes", "gauge", "Spokes configured in the hub's registry."),
)


def render_prometheus(hub, rows, state, spoke_names):
    """node_exporter textfile metrics for one round of probes; label values go out printable and escaped."""
    samples = {name: [] for name, _unused, _unused in METRICS}
    for row in rows:
        labels = _labels(hub=hub, spoke=row["spoke"], forward=row["forward"])
        since = state["tunnels"].get(row["spoke"], {}).get(row["forward"], {}).get("since")
        samples["revtunnel_tunnel_up"].append(f"{labels} {1 if row['up'] else 0}")
        squatter = row.get("squatted_by") or ""
        samples["revtunnel_tunnel_squatted"].append(
            f"{_labels(hub=hub, spoke=row['spoke'], forward=row['forward'], account=squatter)} {1 if squatter else 0}")
        samples["revtunnel_tunnel_probe_seconds"].append(f"{labels} {row['seconds']:.6f}")
        if since is not None:
            samples["revtunnel_tunnel_last_change_timestamp_seconds"].append(f"{labels} {since:.3f}")
    for metric, counter in (("revtunnel_tunnel_sessions_replaced_total", "replaced"),
                            ("revtunnel_key_second_address_total", "second_address")):
        counts = state["reaper"][counter]
        # Every spoke gets a sample from the start, so increase() sees the first replacement too.
        for spoke in sorted(set(spoke_names) | set(counts)):
            samples[metric].append(f"{_labels(hub=hub, spoke=spoke)} {counts.get(spoke, 0)}")
    samples["revtunnel_spokes"].append(f"{_labels(hub=hub)} {len(spoke_names)}")
    lines = []
    for name, kind, text in METRICS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"


# --- history ------------------------------------------------------------------------------------------

def parse_transitions(entries):
    """Transitions from the metrics unit's journal entries: [(time, spoke, forward, up, detail, first)]."""
    found = []
    for entry in entries:
        when = journal.timestamp(entry)
        match = TRANSITION.match(journal.message(entry))
        if when is None or not match:
            continue
        detail = match["detail"] or ""
        first = detail == FIRST_SEEN or detail.startswith(FIRST_SEEN + ", ")
        if first:
            detail = detail[len(FIRST_SEEN) + 2:] if detail != FIRST_SEEN else ""
        found.append((when, match["spoke"], match["forward"], match["state"] == "up", detail, first))
    found.sort(key=lambda t: t[0])
    return found


def _segments(events, start, end, current):
    """[(from, to, True/False/None, detail)] covering start..end for one tunnel; None where unknown."""
    if events:
        first = events[0]
        state = None if first[5] else not first[3]
    elif current is not None and current["since"] <= start:
        state = current["up"]
    else:
        state = None
        if current is not None and current["since"] < end:
            events = [(current["since"], None, None, current["up"], "", True)]
    segments, at, detail = [], start, ""
    for when, _unused, _unused, up, why, _unused in events:
        when = min(max(when, start), end)
        if when > at:
            segments.append((at, when, state, detail))
        at, state, detail = when, up, why
    if end > at:
        segments.append((at, end, state, detail))
    return segments


def timeline(segments, start, end, width=48):
    """One character per 1/width of the window: up, down, both in that slice, or unknown."""
    chars, step = [], (end - start) / width
    for i in range(width):
        lo, hi = start + i * step, start + (i + 1) * step
        seen = {seg[2] for seg in segments if seg[0] < hi and seg[1] > lo and seg[2] is not None}
        chars.append(TIMELINE_MIXED if seen == {True, False} else TIMELINE_DOWN if seen == {False}
                     else TIMELINE_UP if seen == {True} else TIMELINE_UNKNOWN)
    return "".join(chars)


def _outages(segments, start, end):
    """Each stretch down within the window; down_at None when it began before, up_at None while it lasts."""
    outages = []
    for a, b, state, detail in segments:
        if state is not False:
            continue
        if outages and outages[-1]["_end"] == a:
            outages[-1]["_end"] = b
            continue
        outages.append({"down_at": a if a > start else None, "detail": detail, "_start": a, "_end": b})
    for outage in outages:
        a, b = outage.pop("_start"), outage.pop("_end")
        outage["up_at"] = b if b < end else None
        outage["seconds"] = round(b - a, 1)
    return outages


def history(entries, start, end, state=None, tunnels=(), width=48):
    """Per tunnel over start..end: outages, availability over the known part, and a timeline.

    ``tunnels`` are (spoke, forward) pairs to report even without any event (the registry's);
    ``state`` (the metrics state) gives the state of a tunnel whose last transition is older than the
    journal read.
    """
    by_tunnel = {}
    for event in parse_transitions(entries):
        if start <= event[0] <= end:
            by_tunnel.setdefault((event[1], event[2]), []).append(event)
    known = (state or empty_state())["tunnels"]
    report = []
    for spoke, forward in sorted(set(by_tunnel) | set(tunnels)):
        segments = _segments(by_tunnel.get((spoke, forward), []), start, end, known.get(spoke, {}).get(forward))
        up_s = sum(seg[1] - seg[0] for seg in segments if seg[2] is True)
        down_s = sum(seg[1] - seg[0] for seg in segments if seg[2] is False)
        report.append({
            "spoke": spoke,
            "forward": forward,
            "now": {True: "up", False: "down", None: "unknown"}[segments[-1][2] if segments else None],
            "availability": round(up_s / (up_s + down_s), 5) if up_s + down_s else None,
            "known_seconds": round(up_s + down_s, 1),
            "down_seconds": round(down_s, 1),
            "outages": _outages(segments, start, end),
            "timeline": timeline(segments, start, end, width),
        })
    return report


def parse_duration(text):
    """Seconds from '24h', '90m', '7d', '45s' or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 24h, 7d)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match[2]]


DEFAULT_STATE = "/var/lib/revtunnel-metrics/state.json"
REAPER_UNIT = "revtunnel-reaper.service"


def read_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return load_state(handle.read())
    except OSError:
        return empty_state()


def prometheus(args, spokes, rows):
    """The metrics text; with --record also save the state and log each transition to the journal."""
    state = read_state(args.state)
    transitions = update_tunnels(state, rows, time.time())
    match = f"_SYSTEMD_UNIT={REAPER_UNIT}"
    reaper = journal.entries(match, after_cursor=state["reaper"]["cursor"])
    if reaper is None and state["reaper"]["cursor"]:
        # journalctl refuses a cursor (journal gone or replaced): go on from its newest line, recounting nothing
        newest = journal.entries(match, lines=1) or []
        state["reaper"]["cursor"] = newest[-1].get("__CURSOR") if newest else None
    count_reaper(state, journal.from_unit(reaper or [], REAPER_UNIT), document.fingerprints(spokes), spokes)
    if args.record:
        for transition in transitions:
            output.say(transition_line(*transition), sys.stderr)
        _fs.replace(args.state, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode("utf-8"), 0o600)
    return render_prometheus(_probe.printable(args.hub), rows, state, sorted(spokes))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="revtunnel-metrics", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--registry", default=document.DEFAULT_PATH, help="spoke registry (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per probe, in total (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=32, help="probes at once (default: %(default)s)")
    parser.add_argument("--output", help="write the metrics to this file atomically (default: print them)")
    parser.add_argument("--if-dir-exists", action="store_true",
                        help="with --output: write only when the file's directory exists (no textfile collector yet)")
    parser.add_argument("--hub", default=socket.gethostname(),
                        help="the hub label of the metrics (default: %(default)s)")
    parser.add_argument("--state", default=DEFAULT_STATE, help="up/down state between runs (default: %(default)s)")
    parser.add_argument("--user", default="tunnel",
                        help="the tunnel account: a port another account holds is squatted (default: %(default)s)")
    parser.add_argument("--record", action="store_true", help="save the state and log each up/down transition")
    args = parser.parse_args(argv)
    spokes = common.read_registry(args.registry, "revtunnel-metrics")
    if spokes is None:
        return 2
    rows = _probe.check_all(spokes, args.timeout, args.workers, owner_uid=_procfs.account_uid(args.user))
    text = prometheus(args, spokes, rows)
    if not args.output:
        sys.stdout.write(text)
        return 0 if all(r["up"] for r in rows) else 1
    if args.if_dir_exists and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        return 0
    try:
        # The temporary file does not end in .prom, so node_exporter never reads it half written.
        _fs.replace(args.output, text.encode("utf-8"), 0o644)
    except OSError as exc:
        output.say(f"revtunnel-metrics: cannot write {args.output}: {exc}", sys.stderr)
        return 2
    # The metrics carry the tunnels' state: the timer's run fails only when it cannot write them.
    return 0
