# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""revtunnel-reaper: a dead session of a tunnel key gives its ports to the key's next login.

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

The decisions (parse_accepted, checked, SessionBook, useless_sessions) are pure and unit-tested; the
Reaper class around them reads the journal (journalctl -o json), the registry and /proc (_procfs.Proc),
probes the spokes' ports (_probe) and sends SIGTERM. Lines starting with <N> carry a syslog priority
for journald. Installed on the hub as ``revtunnel-reaper`` (the command library, _commands.cli).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _bindguard, _probe, _procfs, _rules
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import authorized_keys as _authorized_keys
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import output

SSHD_IDENTIFIERS = frozenset({"sshd", "sshd-session"})
SSHD_COMMS = frozenset({"sshd", "sshd-session"})
# journalctl match arguments: terms joined by "+" are OR-ed, terms beside each other AND-ed.
JOURNAL_MATCHES = ("_UID=0", "_COMM=sshd", "+", "_UID=0", "_COMM=sshd-session")
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
    # An older session of the key answered and keeps the ports: the new one can get none.
    kept: bool = False


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


def trusted_keys(spokes: dict, fingerprints: dict, authorized_keys: str = "") -> dict[str, Spoke]:
    """{fingerprint: Spoke} of the keys the hub trusts.

    ``spokes`` and ``fingerprints`` come from the registry (document.read_spokes and fingerprints). A registry
    that records no key at all (version 1) falls back to the tunnel account's root-owned authorized_keys,
    read by the registry's own parser: each line's key, its spoke and its permitlisten ports.
    """
    if fingerprints:
        return {fp: Spoke(name, dict(spokes.get(name, {}).get("ports", {}))) for fp, name in fingerprints.items()}
    found = {}
    for line in _authorized_keys.parse(authorized_keys):
        ports = dict(spokes.get(line.name, {}).get("ports", {})) or {
            f"port{n}": port for n, port in enumerate(line.ports)}
        found[document.key_fingerprint(line.key)] = Spoke(line.name, ports)
    return found


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


def holds_none_of(logged_at: float | None, ports: Iterable[int], listener_since: dict[int, float]) -> bool:
    """Whether a session that logged in at LOGGED_AT holds none of PORTS: every one of them has listeners that were
    all there before that login. A listener belongs to the session that bound it, and a session binds only after
    it logged in, so a later session cannot own it. Needs no right over the sessions' processes."""
    ports = list(ports)
    if logged_at is None or not ports:
        return False
    return all(port in listener_since and listener_since[port] < logged_at for port in ports)


def parse_ports(text: str) -> tuple[int, int] | None:
    """(start, end) of 'START-END', or None for ''."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+)-(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]) <= 65535:
        raise ValueError(f"not a port range: {text!r} (use e.g. 10000-10999)")
    return int(match[1]), int(match[2])


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
        # Sessions that logged in while an older one of their key kept the ports: they hold none, ever.
        self.portless: set[int] = set()

    def prune(self, alive: Callable[[Session], bool]) -> None:
        """Forget the sessions that ended."""
        for fingerprint in list(self.sessions):
            kept = [s for s in self.sessions[fingerprint] if alive(s)]
            if kept:
                self.sessions[fingerprint] = kept
            else:
                del self.sessions[fingerprint]
        live = {s.pid for sessions in self.sessions.values() for s in sessions}
        self.portless &= live

    def record(self, new: Session) -> None:
        """Know NEW without deciding anything: the journal replayed at start only rebuilds the book."""
        if new.user != self.user or new.start_ticks is None:
            return
        for fingerprint in list(self.sessions):
            self.sessions[fingerprint] = [s for s in self.sessions[fingerprint] if s.pid != new.pid]
        self.sessions.setdefault(new.fingerprint, []).append(new)

    def find(self, pid: int) -> Session | None:
        return next((s for sessions in self.sessions.values() for s in sessions if s.pid == pid), None)

    def by_pid(self) -> dict[int, Session]:
        """{pid: session} of the book in one pass: what find() answers, for every pid at once."""
        found: dict[int, Session] = {}
        for sessions in self.sessions.values():
            for session in sessions:
                found.setdefault(session.pid, session)
        return found

    def accepted(self, new: Session, now: float, alive: Callable[[Session], bool],
                 spoke_live: Callable[..., bool] = lambda _s, _older=(): False) -> Decision:
        """Record NEW; decide which older sessions of its key to terminate.

        ``spoke_live(new, older)`` reads the spoke's banner through its ports: True while an older session
        still carries the spoke end to end, and then nothing is terminated (``decision.kept`` says so).
        """
        decision = Decision()
        if new.user != self.user:
            return decision
        # A pid seen before belongs to an ended session now: the newest line for a pid wins.
        for fingerprint in list(self.sessions):
            self.sessions[fingerprint] = [s for s in self.sessions[fingerprint] if s.pid != new.pid]
        self.portless.discard(new.pid)
        living = [s for s in self.sessions.get(new.fingerprint, []) if alive(s)]
        older = [s for s in living if s.pid not in self.portless]
        # A session already gone (start_ticks None) is decided on, never booked.
        booked = [new] if new.start_ticks is not None else []
        self.sessions[new.fingerprint] = [*living, *booked]
        if not older:
            return decision

        if spoke_live(new, older):
            decision.kept = True
            self.portless.add(new.pid)
            if new.addr in {s.addr for s in older}:
                # The spoke itself, from its session's address: its watchdog checking its session after a cut.
                decision.notices.append(
                    f"spoke {new.spoke or '?'}: its key {new.fingerprint} logged in again from {new.where()}, the "
                    f"address of its live session; that session keeps the ports")
                return decision
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
        self.sessions[new.fingerprint] = [s for s in living if s.pid in self.portless] + booked
        decision.terminate = older
        decision.notices.append(
            f"key {new.fingerprint}: new session from {new.where()} (pid {new.pid}) replaces "
            + ", ".join(f"{s.where()} (pid {s.pid})" for s in older) + ", whose spoke did not answer")
        return decision


def checked(session: Session, proc: _procfs.Proc, keys: dict[str, Spoke], now: float | None = None,
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


LIVE_CACHE = 10.0
# A session of a key whose ports an older session holds is ended this long after its login (its forward was
# refused within milliseconds; a spoke's ssh, with ExitOnForwardFailure, is gone by then).
NEWCOMER_GRACE = 0.5
REPORT_REFUSED_EVERY = 60.0
# TIME_WAIT lasts 60 s: a squatter's are ended for that long after it was last seen.
SQUATTER_TIME_WAIT = 70.0
# An older session whose TCP re-sends within this many seconds is waited for; one that re-sends later is replaced.
RESUME_SOON = 5.0


def file_stamp(path):
    """What changes when a file is replaced or written: inode, size, mtime in ns (None when it is missing).

    The registry and authorized_keys are replaced by a rename (a new inode) at every write.
    """
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def log(priority, text):
    output.say(f"<{priority}>{text}")


def session_answers(port, timeout, host="127.0.0.1"):
    """Whether the far end of the session listening on PORT answers within TIMEOUT: a banner, any data, a close.

    A dead session's listener accepts, sshd asks the gone client to open a channel, and nothing ever
    comes back. Anything else came from the live client: a spoke's banner, or the close that follows a
    refused channel (an OpenSSH 10 spoke penalising 127.0.0.1 drops the connection).
    """
    try:
        _probe.read_first_line(port, time.monotonic() + timeout, host=host)
    except socket.timeout:
        return False
    except OSError:
        # Nobody listens: no session holds the port.
        return False
    return True


CAP_DAC_READ_SEARCH, CAP_KILL, CAP_NET_ADMIN, CAP_SYS_PTRACE = 2, 5, 12, 19
LINUX_CAPABILITY_VERSION_3 = 0x20080522


def keep_only_capabilities(*keep):
    """Drop every capability but KEEP from this process (effective, permitted, inheritable): after the bind filter
    is linked, the daemon needs only to read the sessions' and other accounts' fds and to signal their processes."""
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    # What this process does not have (a container without CAP_DAC_READ_SEARCH) cannot be kept.
    with open("/proc/self/status", encoding="ascii") as status:
        mask &= next((int(line.split()[1], 16) for line in status if line.startswith("CapPrm:")), 0)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0, mask >> 32, mask >> 32, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(header, data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


class Reaper:
    """The reaper's I/O around SessionBook: journal entries in, probes and signals out; the spokes' ports guarded."""

    def __init__(self, args, proc=None):
        self.args = args
        self.proc = proc or _procfs.Proc(hertz=os.sysconf("SC_CLK_TCK"))
        self.book = SessionBook(args.user, window=args.window, max_replacements=args.max_replacements,
                                hold=args.hold, report_every=args.report_every)
        self.started = time.time()
        self.fds_unreadable = False
        self.reported_untrusted = set()
        self.live_until = {}
        self.tunnel_uid = _procfs.account_uid(args.user)
        self.port_range = parse_ports(args.ports)
        # (port, inode) of every listener on a spoke's port -> when this process first saw it.
        self.first_seen = {}
        self.guard = None
        self.self_test_key = None
        self.refused_counts = {}
        self.refused_reported = {}
        self.squatters_seen = set()
        # port -> when another account was last seen holding it: its TIME_WAIT sockets are ended for a while after.
        self.squatted_ports = {}
        # (the registry's and authorized_keys' file_stamp, the keys read from them)
        self.trusted = None
        # (the registry's file_stamp, its spokes) and (those spokes, the keys they record): read again on a change.
        self.spokes_read = None
        self.spokes_keys = None
        # {(monitor pid, start ticks): the inode of a listener its session was seen holding}: while that inode
        # listens, the session still holds it, and its fds are not read again.
        self.held = {}

    # --- what the hub holds -----------------------------------------------------------------------------

    def sockets(self):
        """Every TCP socket of the hub, read once per look."""
        return _procfs.tcp_sockets((str(self.proc.root / "net" / "tcp"), str(self.proc.root / "net" / "tcp6")))

    def registry_spokes(self):
        """The registry's spokes, parsed again only when the file changed (it is replaced at every write); {} while
        it cannot be read, and then read again at the next look."""
        stamp = file_stamp(self.args.registry)
        if stamp is not None and self.spokes_read is not None and self.spokes_read[0] == stamp:
            return self.spokes_read[1]
        try:
            spokes = document.read_spokes(self.args.registry)
        except (OSError, ValueError):
            return {}
        self.spokes_read = (stamp, spokes) if stamp is not None else None
        return spokes

    def recorded_keys(self, spokes):
        """The keys SPOKES record (no authorized_keys fallback), computed once per registry read."""
        if self.spokes_keys is None or self.spokes_keys[0] is not spokes:
            self.spokes_keys = (spokes, trusted_keys(spokes, document.fingerprints(spokes)))
        return self.spokes_keys[1]

    def observe(self, sockets, now):
        """Note when each listener on a port was first seen; {port: when the newest of its listeners was}."""
        current = {(s.port, s.inode) for s in sockets if s.state == _procfs.TCP_LISTEN}
        for key in current - set(self.first_seen):
            self.first_seen[key] = now
        for key in set(self.first_seen) - current:
            del self.first_seen[key]
        since = {}
        for (port, _inode), when in self.first_seen.items():
            since[port] = max(since.get(port, when), when)
        return since

    def guarded_ports(self, spokes):
        ports = {int(p) for entry in spokes.values() for p in entry.get("ports", {}).values()}
        if self.port_range:
            ports |= set(range(self.port_range[0], self.port_range[1] + 1))
        return ports

    # --- decisions on logins --------------------------------------------------------------------------------

    def keys(self):
        """The keys the hub trusts now: the registry is read again whenever it changed (spokes come and go while
        we run), and only then, so that a hub restart's thousand logins cost one parse, not one each."""
        stamp = (file_stamp(self.args.registry), file_stamp(self.args.authorized_keys))
        if self.trusted is not None and stamp == self.trusted[0]:
            return self.trusted[1]
        try:
            spokes = document.read_spokes(self.args.registry)
        except (OSError, ValueError) as exc:
            log(4, f"cannot read the registry {self.args.registry}: {exc}; trusting no key until it is readable")
            return {}
        fingerprints = document.fingerprints(spokes)
        authorized = ""
        if not fingerprints:
            try:
                with open(self.args.authorized_keys, encoding="utf-8") as handle:
                    authorized = handle.read()
            except OSError:
                authorized = ""
        found = trusted_keys(spokes, fingerprints, authorized)
        self.trusted = (stamp, found)
        return found

    def alive(self, session):
        return (self.proc.start_ticks(session.pid) == session.start_ticks
                and self.proc.is_tunnel_monitor(session.pid, session.user))

    def hub_end(self, session, older):
        """What the hub's own end of the older sessions says about them: 'stuck', 'resuming' or None.

        sshd's end of each older session is the hub's socket to the session's client address and port. 'stuck':
        every one of them has data the spoke has not acknowledged and re-sends it only RESUME_SOON s or more from
        now (a busy cut: connections to the port were queued on it while the link was down, and TCP backs off to
        about a minute); nothing new passes before that, a banner read through the port included. 'resuming': the
        same, but re-sent within RESUME_SOON s, and the new login comes from the old session's own address (the
        spoke checking after a shorter cut): the old session carries on, with its connections. None: look as before.
        """
        sockets = self.sockets()
        found = [_procfs.connection((s.addr, s.port), sockets) for s in older]
        if not found or None in found:
            return None
        if all(_procfs.waiting_for_retransmission(sock, RESUME_SOON) for sock in found):
            why = ", ".join(f"{s.where()} waits {sock.when:.0f} s for its next re-send ({sock.retransmits} "
                            "unanswered)" for s, sock in zip(older, found))
            log(5, f"spoke {session.spoke or '?'}: its older session cannot pass anything before TCP re-sends "
                   f"({why}); the new session from {session.where()} gets the ports")
            return "stuck"
        if session.addr in {s.addr for s in older} and all(
                sock.unacked > 0 and sock.timer == _procfs.TIMER_RETRANSMIT for sock in found):
            log(6, f"spoke {session.spoke or '?'}: its older session re-sends within {RESUME_SOON:.0f} s and carries "
                   f"on; the new session from {session.where()}, its own address, gets no port")
            return "resuming"
        return None

    def spoke_live(self, keys):
        """Whether the session holding a key's ssh port still answers end to end (see session_answers)."""
        def check(session, older=()):
            spoke = keys.get(session.fingerprint)
            ports = [int(port) for fwd, port in (spoke.ports.items() if spoke else []) if fwd == "ssh"]
            end = self.hub_end(session, older) if older else None
            if end is not None:
                return end == "resuming"
            if spoke is None or not ports:
                # No banner to read: keep the older session; ClientAlive ends it if it is dead.
                return bool(spoke and spoke.ports)
            now = time.monotonic()
            if self.live_until.get(session.fingerprint, 0.0) > now:
                return True
            live = any(session_answers(port, self.args.probe_timeout) for port in ports)
            if live:
                # One probe per key per LIVE_CACHE s: a key retried in a loop must not flood the spoke's sshd.
                self.live_until[session.fingerprint] = now + LIVE_CACHE
            return live
        return check

    def entry(self, entry):
        """One journal entry: a session to record (replay) or to decide on (live)."""
        session = parse_accepted(entry)
        if session is None or session.user != self.args.user:
            return
        keys = self.keys()
        trusted = checked(session, self.proc, keys, now=time.time())
        if trusted is None:
            if session.fingerprint not in keys and session.fingerprint not in self.reported_untrusted:
                self.reported_untrusted.add(session.fingerprint)
                log(6, f"ignoring session pid {session.pid} from {session.where()}: key {session.fingerprint} "
                       "is not in the registry")
            return
        if trusted.logged_at is not None and trusted.logged_at < self.started:
            self.book.record(trusted)
            return
        decision = self.book.accepted(trusted, time.monotonic(), self.alive, self.spoke_live(keys))
        for text in decision.warnings:
            log(4, text)
        for text in decision.notices:
            log(5, text)
        for old in decision.terminate:
            if self.alive(old):
                self.terminate(old.pid, f"stale session of spoke {old.spoke} from {old.where()}")
        if decision.kept and trusted.start_ticks is not None:
            # Its key's live session keeps every port: this one can get none, so it goes now, not after a grace.
            self.end_portless(trusted, keys[trusted.fingerprint].ports.values())

    def end_portless(self, session, ports):
        """End SESSION when every one of PORTS has listeners older than its login (it can hold none of them)."""
        now = time.time()
        since = self.observe(self.sockets(), now)
        if holds_none_of(session.logged_at, [int(p) for p in ports], since) and self.alive(session):
            after = f" ({now - session.logged_at:.2f} s after its login)" if session.logged_at else ""
            log(5, f"ending session pid {session.pid} (spoke {session.spoke}, key {session.fingerprint}, from "
                   f"{session.where()}): its key's live session holds every port, so this one holds none{after}")
            self.terminate(session.pid, f"session of spoke {session.spoke} from {session.where()}")
            return True
        return False

    def terminate(self, pid, why, sig=signal.SIGTERM):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            log(6, f"pid {pid} ({why}) had already ended")
        except PermissionError as exc:
            log(3, f"cannot end pid {pid} ({why}): {exc}")

    # --- the cap: sessions that hold no port ------------------------------------------------------------

    def holds(self, pid, session, ports, listening, children, since, ticks=None):
        """Whether the session of monitor PID holds a listener: True, False, or None when it cannot be told.

        Without reading the session's fds: a key none of whose ports has a listener holds none, and a session that
        logged in after all its ports' listeners appeared holds none. With the fds (CAP_SYS_PTRACE): exactly, and a
        session seen holding a listener (the monitor known by its pid and START TICKS) holds it while that socket
        listens: only the session that bound it holds it, and it stops listening when the session lets it go.
        """
        if session is not None and ports and (not any(port in since for port in ports)
                                              or holds_none_of(session.logged_at, ports, since)):
            return False
        if self.fds_unreadable:
            return None
        if ticks is not None and self.held.get((pid, ticks)) in listening:
            return True
        try:
            inode = self.proc.held_listener(pid, listening, children)
        except PermissionError as exc:
            self.fds_unreadable = True
            log(4, f"cannot read the fds of the tunnel sessions ({exc}): without CAP_SYS_PTRACE a session's ports "
                   "are judged by their listeners' age alone (a later session of a key whose ports are held holds "
                   "none of them)")
            return None
        if ticks is not None:
            if inode is None:
                self.held.pop((pid, ticks), None)
            else:
                self.held[(pid, ticks)] = inode
        return inode is not None

    def cap(self, sockets=None, spokes=None):
        """End the tunnel sessions that hold no listener: at once when their key's ports are held by an older
        session, after the idle grace otherwise."""
        if self.args.idle_grace <= 0:
            return
        # One pass over /proc answers every question of this round but the last one before a signal.
        look = self.proc.look(self.args.user)
        found = look.monitors
        self.held = {key: inode for key, inode in self.held.items() if look.is_monitor(*key)}
        if not found:
            self.book.prune(lambda session: look.is_monitor(session.pid, session.start_ticks))
            return
        now = time.time()
        sockets = self.sockets() if sockets is None else sockets
        since = self.observe(sockets, now)
        keys = self.keys() if spokes is None else self.recorded_keys(spokes)
        listening = {int(s.inode) for s in sockets if s.state == _procfs.TCP_LISTEN and s.inode.isdigit()}
        book = self.book.by_pid()
        for pid in found:
            ticks = look.start_ticks(pid)
            known = book.get(pid)
            if known is not None and known.start_ticks != ticks:
                # Its pid was reused since that session was booked (between two looks): another process.
                known = None
            spoke = keys.get(known.fingerprint) if known else None
            ports = [int(p) for p in spoke.ports.values()] if spoke else []
            holds = self.holds(pid, known, ports, listening, look.children, since, ticks)
            started = self.proc.started_at(ticks, look.btime)
            newcomer = (holds is False and known is not None and ports and any(p in since for p in ports)
                        and now - (known.logged_at or now) >= NEWCOMER_GRACE)
            useless = newcomer or bool(useless_sessions([(pid, started, holds)], now, self.args.idle_grace))
            # Checked again right before the signal: the pid is still that monitor.
            if useless and self.proc.start_ticks(pid) == ticks and self.proc.is_tunnel_monitor(pid, self.args.user):
                who = f"spoke {known.spoke}, key {known.fingerprint}, from {known.where()}" if known else "unknown key"
                reason = ("its key's ports are held by an older session" if newcomer else
                          f"it has held no forwarded port for {int(self.args.idle_grace)} s")
                log(5, f"ending session pid {pid} ({who}): {reason}")
                self.terminate(pid, who)
        self.book.prune(lambda session: look.is_monitor(session.pid, session.start_ticks))

    # --- the guard: no other account holds a spoke's port ----------------------------------------------

    def start_guard(self):
        """Link the bind filter (only the tunnel account binds the spokes' port range), then drop privileges."""
        if self.port_range is None or self.args.guard == "off" or self.tunnel_uid is None:
            return
        cgroup = _bindguard.guarded_cgroup()
        if cgroup is None:
            log(4, "no unified (v2) cgroup hierarchy: the bind filter is off; a squatter on a spoke's port is ended "
                   "when it is seen (every second)")
            return
        guard = _bindguard.BindGuard(*self.port_range, self.tunnel_uid, cgroup)
        try:
            guard.link()
        except OSError as exc:
            guard.close()
            log(4, f"cannot load the bind filter ({exc.strerror or exc}; needs Linux >= 5.7 with cgroup v2, and "
                   f"CAP_BPF with CAP_NET_ADMIN or CAP_SYS_ADMIN){': ' + guard.log[-300:] if guard.log else ''}; "
                   "a squatter on a spoke's port is ended when it is seen (every second)")
            return
        test = self.filter_applies()
        if test is None:
            guard.close()
            log(4, f"the bind filter linked to {cgroup} is not applied here (this process could still bind a spoke "
                   "port): it is off; a squatter on a spoke's port is ended when it is seen (every second)")
            return
        self.self_test_key = (os.getuid(), test)
        self.guard = guard
        log(6, f"bind filter linked to cgroup {cgroup}: only {self.args.user} (uid {self.tunnel_uid}) binds TCP ports "
               f"{self.port_range[0]}-{self.port_range[1]}; every other account, root included, gets EPERM")

    def warn_ephemeral(self):
        """Say so when the spokes' range overlaps the kernel's ephemeral ports (the preflight refuses that, but the
        sysctl can change later): a connect() or a bind() to port 0 takes a port there without a bind the filter
        sees."""
        if self.port_range is None:
            return
        try:
            text = (self.proc.root / "sys" / "net" / "ipv4" / "ip_local_port_range").read_text()
        except OSError:
            return
        overlap = _rules.ephemeral_overlap(*self.port_range, text)
        if overlap:
            log(4, f"the spokes' ports {self.port_range[0]}-{self.port_range[1]} overlap the kernel's ephemeral ports "
                   f"{overlap[0]}-{overlap[1]} (net.ipv4.ip_local_port_range): any account's connect() can take a "
                   "spoke's port there, unseen by the bind filter; move one of the two ranges")

    def filter_applies(self):
        """The port on which this process (not the tunnel account) was refused a bind, or None if it was not."""
        taken = {s.port for s in self.sockets()}
        for port in range(self.port_range[0], self.port_range[1] + 1):
            if port in taken:
                continue
            with socket.socket() as probe:
                # SO_REUSEADDR and no listen(): should the filter not apply, this bind blocks no tunnel.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except PermissionError:
                    return port
                except OSError:
                    continue
                return None
        return None

    def drop_privileges(self):
        # A squatter that got in before the filter (at boot, or while the reaper restarted) can leave TIME_WAIT
        # sockets on a spoke's port once it is ended: ending those takes CAP_NET_ADMIN.
        try:
            keep_only_capabilities(CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_KILL, CAP_NET_ADMIN)
        except (OSError, AttributeError) as exc:
            log(4, f"cannot drop the capabilities used to link the bind filter: {exc}")

    def guard_round(self, sockets, spokes):
        """Name every account refused a bind (the filter's counts) or holding a spoke's port (end its process)."""
        port_of = {int(p): f"{name}/{fwd}" for name, entry in spokes.items()
                   for fwd, p in entry.get("ports", {}).items()}
        now = time.monotonic()
        if self.guard is not None:
            try:
                counts = self.guard.refused()
            except OSError:
                counts = {}
            fresh = {}
            for key, count in sorted(counts.items()):
                if key != self.self_test_key and count > self.refused_counts.get(key, 0):
                    fresh.setdefault(key[0], []).append((key[1], count - self.refused_counts.get(key, 0), count))
            # One line per account and minute, however many ports it tries: a bind loop cannot flood the journal.
            for uid, tries in sorted(fresh.items()):
                if now - self.refused_reported.get(uid, float("-inf")) < REPORT_REFUSED_EVERY:
                    continue
                self.refused_reported[uid] = now
                for port, _new, count in tries:
                    self.refused_counts[(uid, port)] = count
                shown = ", ".join(f"port {port} ({'spoke ' + port_of[port] if port in port_of else 'range'}) x{new}"
                                  for port, new, _count in tries[:5])
                more = f" and {len(tries) - 5} more ports" if len(tries) > 5 else ""
                log(4, f"refused binds by account {_procfs.account(uid)} (uid {uid}): {shown}{more}; only "
                       f"{self.args.user} may bind the spokes' ports")
        self.clear_time_wait(sockets, port_of)
        holders = _procfs.foreign_holders(sockets, self.guarded_ports(spokes), self.tunnel_uid)
        if not holders:
            return
        owners = self.proc.socket_holders({int(s.inode) for s in holders if s.inode.isdigit()})
        for sock in holders:
            self.squatted_ports[sock.port] = time.monotonic()
            where = f"spoke {port_of[sock.port]}" if sock.port in port_of else "the spokes' range"
            how = "listens on" if sock.state == _procfs.TCP_LISTEN else "holds a socket bound to"
            key = (sock.uid, sock.port, sock.inode)
            name = _procfs.account(sock.uid)
            pids = [p for p in owners.get(int(sock.inode), []) if (self.proc.uids(p) or [None])[0] == sock.uid]
            if key not in self.squatters_seen:
                self.squatters_seen.add(key)
                log(4, f"port {sock.port} ({where}) is squatted: account {name} (uid {sock.uid}) {how} "
                       f"it, not {self.args.user}'s sshd session")
            if sock.uid == 0:
                continue  # root is out of reach by design; it is named, never signalled
            for pid in pids:
                log(4, f"ending pid {pid} ({self.proc.title(pid) or '?'}) of account {name}: it held "
                       f"port {sock.port} ({where})")
                self.terminate(pid, f"squatter of port {sock.port}", signal.SIGKILL)
            if not pids and ("unfound", key) not in self.squatters_seen:
                self.squatters_seen.add(("unfound", key))
                log(4, f"cannot find the process of account {name} holding port {sock.port}: reading "
                       "other accounts' fds needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH")

    def clear_time_wait(self, sockets, port_of):
        """End TIME_WAIT sockets on a spoke's port that a squatter held lately and nothing listens on: without
        SO_REUSEADDR of their own they keep sshd from binding it for 60 s (with the filter linked, only a squatter
        from before the filter can leave them)."""
        listening = {s.port for s in sockets if s.state == _procfs.TCP_LISTEN}
        now = time.monotonic()
        recent = {port for port, seen in self.squatted_ports.items() if now - seen <= SQUATTER_TIME_WAIT}
        # A tunnel's own TIME_WAIT sockets carry sshd's SO_REUSEADDR and block nothing: only a squatter's are ended.
        waiting = {s.port for s in sockets if s.state == _procfs.TCP_TIME_WAIT and s.port in port_of} & recent
        waiting -= listening
        for port in sorted(waiting):
            try:
                ended = _procfs.destroy_time_wait(port)
            except OSError as exc:
                if ("time_wait", port) not in self.squatters_seen:
                    self.squatters_seen.add(("time_wait", port))
                    log(4, f"cannot end the TIME_WAIT sockets on port {port} (spoke {port_of[port]}): {exc}; its "
                           "tunnel can bind it again once they expire (60 s)")
                continue
            if ended:
                log(5, f"ended {ended} TIME_WAIT socket(s) on port {port} (spoke {port_of[port]}), which nothing "
                       "listens on: they kept its tunnel from binding it")

    def round(self):
        """One look every --cap-every seconds: sessions without ports, and the guard."""
        sockets = self.sockets()
        spokes = self.registry_spokes()
        self.guarded(self.cap, sockets, spokes)
        self.guarded(self.guard_round, sockets, spokes)

    def run(self):
        self.guarded(self.start_guard)
        self.guarded(self.warn_ephemeral)
        self.drop_privileges()
        # The whole boot is read so that sessions opened before this service started are known; entries
        # logged before this process started only rebuild the book (a restart kills nothing).
        journal = subprocess.Popen(
            ["journalctl", "--boot", "--follow", "--lines=all", "--output=json", "--no-pager",
             *JOURNAL_MATCHES], stdout=subprocess.PIPE)
        log(6, f"following root sshd's journal for sessions of user {self.args.user}")
        buffer = b""
        next_cap = time.monotonic() + self.args.cap_every
        while True:
            ready, _writable, _failed = select.select([journal.stdout], [], [], max(0.0, next_cap - time.monotonic()))
            if ready:
                chunk = os.read(journal.stdout.fileno(), 65536)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    self.guarded(self.entry, entry)
            if time.monotonic() >= next_cap:
                self.guarded(self.round)
                next_cap = time.monotonic() + self.args.cap_every
        return journal.wait() or 1

    def guarded(self, step, *args):
        """One entry or one cap round; a surprise is logged, the reaper goes on with the next one."""
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - a daemon that dies frees no port: log and continue
            log(3, f"unexpected {type(exc).__name__} ignored: {exc}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True, help="the tunnel account")
    parser.add_argument("--registry", default=document.DEFAULT_PATH, help="the hub's spoke registry")
    parser.add_argument("--authorized-keys", default="/etc/ssh/revtunnel/authorized_keys",
                        help="the tunnel account's keys, trusted while the registry records none")
    parser.add_argument("--window", type=float, default=300.0, help="seconds over which replacements are counted")
    parser.add_argument("--max-replacements", type=int, default=3, help="replacements of one key per window")
    parser.add_argument("--hold", type=float, default=600.0, help="seconds a key shared by two machines is left alone")
    parser.add_argument("--report-every", type=float, default=600.0,
                        help="seconds between two warnings of a live spoke's key logging in again")
    parser.add_argument("--probe-timeout", type=float, default=2.0, help="seconds to read a spoke's banner")
    parser.add_argument("--idle-grace", type=float, default=20.0,
                        help="seconds a tunnel session may hold no listener before it is ended (0: never)")
    parser.add_argument("--cap-every", type=float, default=1.0,
                        help="seconds between two looks at the sessions and the spokes' ports")
    parser.add_argument("--ports", default="", help="the spokes' port range START-END, guarded against other accounts")
    parser.add_argument("--guard", choices=("auto", "off"), default="auto",
                        help="auto: link the bind filter when the kernel allows it (default); off: never")
    return parser.parse_args(argv)


def main(argv=None):
    return Reaper(parse_args(argv)).run()
