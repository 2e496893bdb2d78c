# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The newest session of a tunnel key wins: the logic of revtunnel-reaper, with no I/O of its own.

A spoke that drops off uncleanly (NAT reboot, address change, long cut) leaves its sshd session
on the hub holding the spoke's forwarded ports until ClientAlive notices, and any connection to
those ports meanwhile keeps that from happening. Each spoke key may only listen on its own ports,
so when sshd accepts a new session for a key, the older sessions of that same key are stale: they
are terminated so the new session (or the spoke's next retry) can bind the ports.

Two machines that share one key would take the ports from each other forever. That pattern (the
key's sessions swap back and forth, or are replaced too often) stops the replacing for that key
for a while and is reported loudly, naming both addresses, instead of flapping silently.

The journal reader, /proc and kill() live in the thin script ``revtunnel-reaper``; this module
only parses and decides, so it is tested with plain pytest.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SSHD_IDENTIFIERS = frozenset({"sshd", "sshd-session"})
ACCEPTED_RE = re.compile(
    r"^Accepted publickey for (?P<user>\S+) from (?P<addr>\S+) port (?P<port>\d+) \S+: "
    r"(?P<key_type>\S+) (?P<fingerprint>SHA256:[A-Za-z0-9+/=]+)"
)


@dataclass(frozen=True)
class Session:
    """One accepted tunnel session: the sshd monitor process ([priv]) that owns it."""

    pid: int
    user: str
    fingerprint: str
    addr: str
    port: int
    start_ticks: int | None = None
    logged_at: float | None = None

    def where(self) -> str:
        return f"{self.addr} port {self.port}"


@dataclass
class Decision:
    """What to do after an accepted session: sessions to terminate and lines to log."""

    terminate: list[Session] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _text(value) -> str | None:
    """journalctl -o json gives a string, or a list of byte values for non-UTF-8 fields."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) for b in value):
        return bytes(value).decode("utf-8", "replace")
    return None


def parse_accepted(entry: dict) -> Session | None:
    """The session announced by one journal entry (journalctl -o json), or None."""
    if _text(entry.get("SYSLOG_IDENTIFIER")) not in SSHD_IDENTIFIERS:
        return None
    message = _text(entry.get("MESSAGE"))
    pid = _text(entry.get("_PID"))
    if not message or not pid or not pid.isdigit():
        return None
    match = ACCEPTED_RE.match(message)
    if not match:
        return None
    realtime = _text(entry.get("__REALTIME_TIMESTAMP"))
    return Session(pid=int(pid), user=match["user"], fingerprint=match["fingerprint"], addr=match["addr"],
                   port=int(match["port"]), logged_at=int(realtime) / 1e6 if realtime and realtime.isdigit() else None)


def read_start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Field 22 of /proc/PID/stat (start time since boot, in clock ticks), or None if gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def started_at(start_ticks: int | None, proc: Path = Path("/proc"), hertz: int = 100) -> float | None:
    """The wall-clock time a process started: the kernel's boot time plus its start ticks."""
    if start_ticks is None:
        return None
    try:
        btime = next(int(line.split()[1]) for line in (proc / "stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return btime + start_ticks / hertz


def is_that_session(session: Session, process_start: float | None, grace: float = 600.0) -> bool:
    """Whether the process now holding the session's pid can be the one that logged the line.

    A session's monitor starts before its "Accepted" line, by at most LoginGraceTime (120 s by default).
    Containers share the host's boot id, so after a container restart ``journalctl --boot`` still holds
    the previous run's lines, whose pids may belong to other processes by now.
    """
    if session.logged_at is None or process_start is None:
        return True
    return session.logged_at - grace <= process_start <= session.logged_at + 2.0


def is_tunnel_monitor(pid: int, user: str, proc: Path = Path("/proc")) -> bool:
    """Whether PID is sshd's privileged monitor of a session of USER ("sshd: USER [priv]")."""
    try:
        title = (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return False
    return bool(re.match(r"^sshd(-session)?: " + re.escape(user) + r" \[priv\]$", title))


class SessionBook:
    """The live tunnel sessions per key fingerprint, and the replacements made for each key."""

    def __init__(self, user: str, window: float = 300.0, max_replacements: int = 3, hold: float = 900.0,
                 warn_every: float = 60.0):
        self.user = user
        self.window = window
        self.max_replacements = max_replacements
        self.hold = hold
        self.warn_every = warn_every
        self.sessions: dict[str, list[Session]] = {}
        self.replacements: dict[str, deque] = {}
        self.held_until: dict[str, float] = {}
        self.last_warning: dict[str, float] = {}

    def prune(self, alive: Callable[[Session], bool]) -> None:
        """Forget the sessions that ended."""
        for fingerprint in list(self.sessions):
            kept = [s for s in self.sessions[fingerprint] if alive(s)]
            if kept:
                self.sessions[fingerprint] = kept
            else:
                del self.sessions[fingerprint]

    def accepted(self, new: Session, now: float, alive: Callable[[Session], bool]) -> Decision:
        """Record NEW; decide which older sessions of its key to terminate."""
        decision = Decision()
        if new.user != self.user:
            return decision
        # A pid seen before belongs to an ended session now: the newest line for a pid wins.
        for fingerprint in list(self.sessions):
            self.sessions[fingerprint] = [s for s in self.sessions[fingerprint] if s.pid != new.pid]
        older = [s for s in self.sessions.get(new.fingerprint, []) if alive(s)]
        self.sessions[new.fingerprint] = [*older, new]
        if not older:
            return decision

        history = self.replacements.setdefault(new.fingerprint, deque())
        while history and now - history[0][0] > self.window:
            history.popleft()
        held = self.held_until.get(new.fingerprint, float("-inf")) > now
        swapped_back = any(old_addr == new.addr and new_addr in {s.addr for s in older} and new_addr != new.addr
                           for _when, old_addr, new_addr in history)
        too_often = len(history) >= self.max_replacements
        if held or swapped_back or too_often:
            if not held:
                self.held_until[new.fingerprint] = now + self.hold
            if now - self.last_warning.get(new.fingerprint, float("-inf")) >= self.warn_every:
                self.last_warning[new.fingerprint] = now
                others = ", ".join(s.where() for s in older)
                reason = ("its sessions swap between these addresses" if swapped_back
                          else f"it was replaced {len(history)} times in {int(self.window)} s" if too_often
                          else "replacing is on hold for this key")
                decision.warnings.append(
                    f"key {new.fingerprint} of user {new.user} is in use from two places: {others} holds the "
                    f"tunnel and {new.where()} wants it ({reason}). Two machines probably share one spoke key; "
                    f"not replacing sessions of this key for {int(self.held_until[new.fingerprint] - now)} s. "
                    f"Give each machine its own key (re-run the spoke role on the copy).")
            return decision

        for old in older:
            history.append((now, old.addr, new.addr))
        self.sessions[new.fingerprint] = [new]
        decision.terminate = older
        decision.notices.append(
            f"key {new.fingerprint}: new session from {new.where()} (pid {new.pid}) replaces "
            + ", ".join(f"{s.where()} (pid {s.pid})" for s in older))
        return decision
