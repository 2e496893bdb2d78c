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

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _probe, _procfs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._commands import output
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import authorized_keys as _authorized_keys
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document

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


class Reaper:
    """The reaper's I/O around SessionBook: journal entries in, probes and signals out."""

    def __init__(self, args, proc=None):
        self.args = args
        self.proc = proc or _procfs.Proc(hertz=os.sysconf("SC_CLK_TCK"))
        self.book = SessionBook(args.user, window=args.window, max_replacements=args.max_replacements,
                                hold=args.hold, report_every=args.report_every)
        self.started = time.time()
        self.cap_disabled = False
        self.reported_untrusted = set()
        self.live_until = {}
        # (the registry's and authorized_keys' file_stamp, the keys read from them)
        self.trusted = None

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

    def spoke_live(self, keys):
        """Whether the session holding a key's ssh port still answers end to end (see session_answers)."""
        def check(session):
            spoke = keys.get(session.fingerprint)
            ports = [int(port) for fwd, port in (spoke.ports.items() if spoke else []) if fwd == "ssh"]
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

    def terminate(self, pid, why):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            log(6, f"pid {pid} ({why}) had already ended")
        except PermissionError as exc:
            log(3, f"cannot end pid {pid} ({why}): {exc}")

    def cap(self):
        """End the tunnel sessions that have held no listener for the grace period."""
        if self.cap_disabled or self.args.idle_grace <= 0:
            return
        found = self.proc.tunnel_monitors(self.args.user)
        if not found:
            self.book.prune(self.alive)
            return
        listening, children = self.proc.listening_inodes(), self.proc.children()
        monitors = []
        for pid in found:
            try:
                holds = self.proc.holds_listener(pid, listening, children)
            except PermissionError as exc:
                self.cap_disabled = True
                log(4, f"cannot read the fds of the tunnel sessions ({exc}): the unit needs CAP_SYS_PTRACE; "
                       "sessions without a listener are not capped")
                return
            ticks = self.proc.start_ticks(pid)
            monitors.append((pid, ticks, self.proc.started_at(ticks), holds))
        useless = set(useless_sessions([(p, at, holds) for p, _ticks, at, holds in monitors], time.time(),
                                       self.args.idle_grace))
        for pid, ticks, _at, _holds in monitors:
            # Checked again right before the signal: the pid is still that monitor.
            if (pid in useless and self.proc.start_ticks(pid) == ticks
                    and self.proc.is_tunnel_monitor(pid, self.args.user)):
                known = self.book.find(pid)
                who = f"spoke {known.spoke}, key {known.fingerprint}, from {known.where()}" if known else "unknown key"
                log(5, f"ending session pid {pid} ({who}): it has held no forwarded port for "
                       f"{int(self.args.idle_grace)} s")
                self.terminate(pid, who)
        self.book.prune(self.alive)

    def run(self):
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
                self.guarded(self.cap)
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
    parser.add_argument("--cap-every", type=float, default=5.0, help="seconds between two looks at the sessions")
    return parser.parse_args(argv)


def main(argv=None):
    return Reaper(parse_args(argv)).run()
