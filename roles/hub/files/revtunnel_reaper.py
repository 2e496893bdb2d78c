# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A dead session of a tunnel key gives its ports to the key's next login: the logic of revtunnel-reaper.

A spoke that drops off uncleanly (NAT reboot, address change, long cut) leaves its sshd session
on the hub holding the spoke's forwarded ports until ClientAlive notices, and any connection to
those ports meanwhile keeps that from happening. When sshd accepts a new session for a key while
older sessions of that key are alive, the reaper reads the spoke's SSH banner through its port:
a dead older session is terminated so the spoke's next retry binds the port; a live one keeps the
port (the newcomer's forward is refused) and one warning names the spoke and the newcomer's address.

What the reaper believes, it checks:

- only journal entries that journald itself attributes to a root sshd process (``_UID``, ``_COMM``,
  ``_EXE``: fields a client cannot set) count, so ``logger -t sshd`` by any account proves nothing;
- the pid of a new session, while it lives, must be root-owned, titled as the tunnel account's monitor
  and started shortly before the line was logged (a session already gone counts only while its line is
  fresh, see checked());
- its key must be one the registry trusts (or, while the registry records no key, one in the tunnel
  account's authorized_keys).

A tunnel session is worth its memory only while it holds a listener (spokes run with
ExitOnForwardFailure), so sessions that hold none for ``idle_grace`` seconds are ended: that caps the
sessions one key can keep open without ever touching an idle tunnel.

The journal reader, /proc, the probes and kill() live in the thin script ``revtunnel-reaper``; this
module parses and decides, and reads /proc through a root path that tests point at a fake tree.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

SSHD_IDENTIFIERS = frozenset({"sshd", "sshd-session"})
SSHD_COMMS = frozenset({"sshd", "sshd-session"})
# journalctl match arguments: terms joined by "+" are OR-ed, terms beside each other AND-ed.
JOURNAL_MATCHES = ("_UID=0", "_COMM=sshd", "+", "_UID=0", "_COMM=sshd-session")
ACCEPTED_RE = re.compile(
    r"^Accepted publickey for (?P<user>\S+) from (?P<addr>\S+) port (?P<port>\d+) \S+: "
    r"(?P<key_type>\S+) (?P<fingerprint>SHA256:[A-Za-z0-9+/=]+)"
)
PERMITLISTEN_RE = re.compile(r'permitlisten="[^":]*:(\d+)"')
KEY_TYPE_RE = re.compile(r"^(ssh-|ecdsa-|sk-)")


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
    spoke: str | None = None

    def where(self) -> str:
        return f"{self.addr} port {self.port}"


@dataclass(frozen=True)
class Spoke:
    """What the hub trusts about one key: the spoke it belongs to and that spoke's ports {forward: port}."""

    name: str
    ports: dict


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


def from_sshd(entry: dict) -> bool:
    """Whether journald itself (not the sender) says a root sshd process wrote the entry.

    Underscore fields are added by journald from the sender's credentials; SYSLOG_IDENTIFIER and
    MESSAGE are whatever the sender wrote. A root process could fake these too: root is out of scope.
    """
    exe = _text(entry.get("_EXE"))
    return (_text(entry.get("_UID")) == "0"
            and _text(entry.get("_COMM")) in SSHD_COMMS
            and (exe is None or os.path.basename(exe) in SSHD_COMMS))


def parse_accepted(entry: dict) -> Session | None:
    """The session announced by one journal entry (journalctl -o json) of a root sshd process, or None."""
    if not from_sshd(entry) or _text(entry.get("SYSLOG_IDENTIFIER")) not in SSHD_IDENTIFIERS:
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


def trusted_keys(spokes: dict, fingerprints: dict, authorized_keys: str = "",
                 key_fingerprint: Callable[[str], str] | None = None) -> dict[str, Spoke]:
    """{fingerprint: Spoke} of the keys the hub trusts.

    ``spokes`` and ``fingerprints`` come from the registry (_spoke_registry.read_spokes and fingerprints).
    A registry that records no key at all (version 1) falls back to the tunnel account's root-owned
    authorized_keys: each line's key, its comment (the spoke's name) and its permitlisten ports.
    """
    if fingerprints:
        return {fp: Spoke(name, dict(spokes.get(name, {}).get("ports", {}))) for fp, name in fingerprints.items()}
    found = {}
    for line in authorized_keys.splitlines():
        words = line.split()
        at = next((i for i, word in enumerate(words) if KEY_TYPE_RE.match(word)), None)
        if at is None or at + 1 >= len(words) or key_fingerprint is None:
            continue
        try:
            fingerprint = key_fingerprint(" ".join(words[at:at + 2]))
        except (IndexError, ValueError):
            continue
        name = words[at + 2] if at + 2 < len(words) else fingerprint
        ports = dict(spokes.get(name, {}).get("ports", {})) or {
            f"port{n}": int(p) for n, p in enumerate(PERMITLISTEN_RE.findall(" ".join(words[:at])))}
        found[fingerprint] = Spoke(name, ports)
    return found


class Proc:
    """The few facts the reaper reads from /proc (a fake tree in tests)."""

    def __init__(self, root: Path = Path("/proc"), hertz: int = 100):
        self.root = Path(root)
        self.hertz = hertz

    def start_ticks(self, pid: int) -> int | None:
        """Field 22 of /proc/PID/stat (start time since boot, in clock ticks), or None if gone."""
        fields = self._stat_fields(pid)
        try:
            return int(fields[19])
        except (IndexError, ValueError, TypeError):
            return None

    def parent(self, pid: int) -> int | None:
        fields = self._stat_fields(pid)
        try:
            return int(fields[1])
        except (IndexError, ValueError, TypeError):
            return None

    def _stat_fields(self, pid: int) -> list[str] | None:
        try:
            stat = (self.root / str(pid) / "stat").read_text()
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        return stat[stat.rfind(")") + 2:].split()

    def started_at(self, start_ticks: int | None) -> float | None:
        """The wall-clock time a process started: the kernel's boot time plus its start ticks."""
        if start_ticks is None:
            return None
        try:
            btime = next(int(line.split()[1]) for line in (self.root / "stat").read_text().splitlines()
                         if line.startswith("btime "))
        except (OSError, StopIteration, ValueError, IndexError):
            return None
        return btime + start_ticks / self.hertz

    def uids(self, pid: int) -> list[int] | None:
        """The real, effective, saved and filesystem uids of PID, or None if gone."""
        try:
            for line in (self.root / str(pid) / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    return [int(u) for u in line.split()[1:]]
        except (OSError, ValueError):
            return None
        return None

    def title(self, pid: int) -> str | None:
        try:
            return (self.root / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace").strip()
        except OSError:
            return None

    def is_tunnel_monitor(self, pid: int, user: str) -> bool:
        """Whether PID is a root process titled as sshd's privileged monitor of a session of USER.

        OpenSSH 9.2 titles it "sshd: USER [priv]", OpenSSH 10 "sshd-session: USER [priv]". Any process
        can take that title, not root's uid: a process of another account is never the monitor.
        """
        title = self.title(pid)
        if title is None or re.match(r"^sshd(-session)?: " + re.escape(user) + r" \[priv\]$", title) is None:
            return False
        uids = self.uids(pid)
        return bool(uids) and all(u == 0 for u in uids)

    def tunnel_monitors(self, user: str) -> list[int]:
        """Every live monitor of a session of USER."""
        pids = []
        for entry in self._pids():
            if self.is_tunnel_monitor(entry, user):
                pids.append(entry)
        return pids

    def _pids(self) -> list[int]:
        try:
            return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())
        except OSError:
            return []

    def children(self) -> dict[int, list[int]]:
        """{parent pid: [child pids]} of every process, read once per look."""
        found: dict[int, list[int]] = {}
        for pid in self._pids():
            parent = self.parent(pid)
            if parent is not None:
                found.setdefault(parent, []).append(pid)
        return found

    def socket_inodes(self, pid: int) -> set[int]:
        """The inodes of the sockets PID holds. Raises PermissionError without CAP_SYS_PTRACE."""
        found = set()
        try:
            names = list((self.root / str(pid) / "fd").iterdir())
        except FileNotFoundError:
            return found
        for name in names:
            try:
                target = os.readlink(name)
            except FileNotFoundError:
                continue
            if target.startswith("socket:["):
                found.add(int(target[8:-1]))
        return found

    def listening_inodes(self) -> set[int]:
        """The inodes of every listening TCP socket (state 0A) of this network namespace."""
        found = set()
        for table in ("tcp", "tcp6"):
            try:
                lines = (self.root / "net" / table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                if len(cols) > 9 and cols[3] == "0A" and cols[9].isdigit():
                    found.add(int(cols[9]))
        return found

    def holds_listener(self, monitor: int, listening: set[int], children: dict[int, list[int]]) -> bool:
        """Whether the session of MONITOR (it or its children) holds a listening socket.

        Raises PermissionError when the fds of the session's unprivileged child cannot be read.
        """
        return any(self.socket_inodes(pid) & listening for pid in [monitor, *children.get(monitor, [])])


def is_that_session(session: Session, process_start: float | None, grace: float = 600.0) -> bool:
    """Whether the process now holding the session's pid can be the one that logged the line.

    A session's monitor starts before its "Accepted" line, by at most LoginGraceTime (120 s by default).
    Containers share the host's boot id, so after a container restart ``journalctl --boot`` still holds
    the previous run's lines, whose pids may belong to other processes by now.
    """
    if session.logged_at is None or process_start is None:
        return False
    return session.logged_at - grace <= process_start <= session.logged_at + 2.0


def useless_sessions(monitors: Iterable[tuple[int, float | None, bool | None]], now: float,
                     idle_grace: float) -> list[int]:
    """The monitors (pid, started at, holds a listener or None if unknown) to end: no listener after the grace.

    A real tunnel binds its ports within a second of logging in and keeps them, idle or not; a session
    whose forward was refused ends itself (ExitOnForwardFailure). What stays without a listener only
    costs the hub memory. Unknown listener state or start time never ends a session.
    """
    return [pid for pid, started, holds in monitors
            if holds is False and started is not None and now - started >= idle_grace]


class SessionBook:
    """The live tunnel sessions per key fingerprint, and the replacements made for each key."""

    def __init__(self, user: str, window: float = 300.0, max_replacements: int = 3, hold: float = 900.0,
                 warn_every: float = 60.0, report_every: float = 600.0):
        self.user = user
        self.window = window
        self.max_replacements = max_replacements
        self.hold = hold
        self.warn_every = warn_every
        self.report_every = report_every
        self.sessions: dict[str, list[Session]] = {}
        self.replacements: dict[str, deque] = {}
        self.held_until: dict[str, float] = {}
        self.last_warning: dict[str, float] = {}
        self.last_report: dict[str, float] = {}

    def prune(self, alive: Callable[[Session], bool]) -> None:
        """Forget the sessions that ended."""
        for fingerprint in list(self.sessions):
            kept = [s for s in self.sessions[fingerprint] if alive(s)]
            if kept:
                self.sessions[fingerprint] = kept
            else:
                del self.sessions[fingerprint]

    def record(self, new: Session) -> None:
        """Know NEW without deciding anything: the journal replayed at start only rebuilds the book."""
        if new.user != self.user or new.start_ticks is None:
            return
        for fingerprint in list(self.sessions):
            self.sessions[fingerprint] = [s for s in self.sessions[fingerprint] if s.pid != new.pid]
        self.sessions.setdefault(new.fingerprint, []).append(new)

    def find(self, pid: int) -> Session | None:
        return next((s for sessions in self.sessions.values() for s in sessions if s.pid == pid), None)

    def accepted(self, new: Session, now: float, alive: Callable[[Session], bool],
                 spoke_live: Callable[[Session], bool] = lambda _s: False) -> Decision:
        """Record NEW; decide which older sessions of its key to terminate.

        ``spoke_live(new)`` reads the spoke's banner through its ports: True while an older session
        still carries the spoke end to end, and then nothing is terminated.
        """
        decision = Decision()
        if new.user != self.user:
            return decision
        # A pid seen before belongs to an ended session now: the newest line for a pid wins.
        for fingerprint in list(self.sessions):
            self.sessions[fingerprint] = [s for s in self.sessions[fingerprint] if s.pid != new.pid]
        older = [s for s in self.sessions.get(new.fingerprint, []) if alive(s)]
        # A session already gone (start_ticks None) is decided on, never booked.
        booked = [new] if new.start_ticks is not None else []
        self.sessions[new.fingerprint] = [*older, *booked]
        if not older:
            return decision

        if spoke_live(new):
            if now - self.last_report.get(new.fingerprint, float("-inf")) >= self.report_every:
                self.last_report[new.fingerprint] = now
                decision.warnings.append(
                    f"spoke {new.spoke or '?'}: its key {new.fingerprint} logged in from {new.where()} while the "
                    f"spoke is live through its session from {', '.join(s.where() for s in older)}; the live "
                    f"session keeps the ports and the new one gets none. If {new.addr} is not that spoke, its "
                    f"key has leaked or two machines share it (repeats of this are not logged for "
                    f"{int(self.report_every)} s).")
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
        self.sessions[new.fingerprint] = booked
        decision.terminate = older
        decision.notices.append(
            f"key {new.fingerprint}: new session from {new.where()} (pid {new.pid}) replaces "
            + ", ".join(f"{s.where()} (pid {s.pid})" for s in older) + ", whose spoke did not answer")
        return decision


def checked(session: Session, proc: Proc, keys: dict[str, Spoke], now: float | None = None,
            fresh: float = 10.0) -> Session | None:
    """SESSION with its start time and spoke when its key is trusted and its pid fits; else None.

    A live pid must be that session's root monitor, started shortly before the line. A pid already gone
    is kept (start_ticks None) only while the line is fresh: a spoke whose forward is refused because a
    dead session holds its port exits within milliseconds, before journald hands the line over, and that
    login is exactly when the dead session must go. Such a session is never booked, and the older
    session it competes with is ended only when it does not answer (the probe), so it proves little.
    """
    if session.fingerprint not in keys:
        return None
    ticks = proc.start_ticks(session.pid)
    if ticks is None:
        if now is None or session.logged_at is None or not -2.0 <= now - session.logged_at <= fresh:
            return None
        return replace(session, start_ticks=None, spoke=keys[session.fingerprint].name)
    if not proc.is_tunnel_monitor(session.pid, session.user) or not is_that_session(session, proc.started_at(ticks)):
        return None
    return replace(session, start_ticks=ticks, spoke=keys[session.fingerprint].name)
