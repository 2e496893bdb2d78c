# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""revtunnel-watch: the watchdog of one tunnel, on the spoke; it ends a silent session early only when it cannot
come back.

Started by the tunnel unit (ExecStartPost) once ssh has its forwards; runs in the unit's sandbox as the
tunnel account and dies with the unit. Every second it reads the kernel's state of ssh's TCP connection
to the hub (_procfs: data the hub has not acknowledged, retransmissions). A session that has been stalled
for a few seconds is either behind a cut link (keep waiting: TCP resumes it, and ssh's own ServerAlive
limit ends it after a long outage) or dead while the hub is fine (reconnect now). To tell them apart it
reads the banner of a fresh connection to the hub's sshd (_probe.probe_ssh):
- no banner: the hub is unreachable, so is any new session: wait;
- banner, and this host no longer has the session's local address: the session can never resume
  (the spoke moved, DHCP gave another address): end it now;
- banner, same address: the session resumes at its next transmission, or meets a reset there; wait
  for that transmission plus 2 s (at most --resume-wait s), then end it if it is still stalled: its own
  packet went out while the hub was reachable and nothing came back.
Ending it is SIGTERM to ssh; the unit's Restart=always dials again at once.

A session can also be stuck at the hub's end: connections to the spoke's port during a cut queue data on the hub,
whose TCP then waits up to a minute before re-sending it, long after the link is back, and the spoke cannot see the
hub's timer. So after a long stall the watchdog knocks, once: when the hub answers while this host still holds its
own data back (the link went down here: a zero-window probe timer), or when the stall ends. It dials a second session
with the tunnel's own command line. The hub's reaper looks at its end of the old session: when the hub's data waits
for a re-send, the new session gets the ports at once (the knock is retried a few times while the reaper ends the old
one); when the hub's end is fine it reads the banner through the old session as always, which wakes it, and the
knock is refused and ends. A knock that got the ports proves the old session was given up by the hub: the watchdog
ends both, and the unit dials again at once (no notification access needed, the sandbox is unchanged).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _probe, _procfs
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import output

OWN_TCP = ("/proc/self/net/tcp", "/proc/self/net/tcp6")


def progressed(sock, before):
    """Whether the hub acknowledged something since the sample BEFORE (or answers window probes).

    ssh sends a keep-alive after a few seconds without a word from the hub, so a session whose hub hears
    nothing has data waiting that only grows; a healthy busy one sees it shrink between samples.
    """
    if sock.unacked == 0 or sock.timer == _procfs.TIMER_PROBE0 and sock.probes == 0:
        return True
    return before is not None and sock.unacked < before.unacked


def socket_inodes(pid):
    """Inodes of the sockets process PID holds, lowest descriptor first (same account: no privilege needed)."""
    inodes = []
    fd_dir = f"/proc/{pid}/fd"
    for name in sorted(os.listdir(fd_dir), key=int):
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(target[8:-1])
    return inodes


def session_socket(pid, tables=OWN_TCP):
    """ssh's connection to the hub, or None: its first TCP socket (the forwarded connections come later)."""
    rows = {sock.inode: sock for sock in _procfs.tcp_sockets(tables) if sock.state == _procfs.TCP_ESTABLISHED}
    for inode in socket_inodes(pid):
        if inode in rows:
            return rows[inode]
    return None


def have_address(ip):
    """Whether this host still has IP (binding to an address we do not have fails)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
    return True


def hub_answers(host, port, timeout):
    """A fresh connection to the hub's sshd reads its banner within TIMEOUT s (one deadline in all)."""
    return _probe.probe_ssh(port, timeout, host=host).up


class Watch:
    """The decisions, fed one sample a second (times in seconds, monotonic)."""

    def __init__(self, silent_after=4.0, probe_every=1.0, resume_wait=120.0, grace=2.0, knock_after=10.0,
                 knock_every=30.0):
        self.silent_after, self.probe_every, self.resume_wait, self.grace = (
            silent_after, probe_every, resume_wait, grace)
        self.knock_after, self.knock_every = knock_after, knock_every
        self.before = None
        self.progress_at = None
        self.next_probe = 0.0
        self.next_knock = 0.0
        self.deadline = None

    def held_back(self, sock, silent, now):
        """Whether to knock now: this host held its data back for long (the link went down here: a zero-window
        probe timer), so the hub may hold its own just as long. Notes the knock."""
        if sock.timer != _procfs.TIMER_PROBE0 or silent < self.knock_after or now < self.next_knock:
            return False
        self.next_knock = now + self.knock_every
        return True

    def step(self, now, sock, probe, have_local):
        """One sample; returns (action, message): action is None, 'log', 'knock' or 'end'."""
        before, self.before = self.before, sock
        if sock is None or self.progress_at is None or progressed(sock, before):
            stalled = 0.0 if self.progress_at is None else now - self.progress_at
            resumed = self.deadline is not None
            self.progress_at, self.deadline, self.next_probe = now, None, 0.0
            if sock is not None and stalled >= self.knock_after and now >= self.next_knock:
                # The hub acknowledged this host's data; whether its own waits for a re-send, only the hub knows.
                self.next_knock = now + self.knock_every
                return "knock", (f"the session moved again after {stalled:.0f} s: knocking, in case the hub's end "
                                 "still waits for TCP to re-send")
            return ("log", "the session resumed") if resumed else (None, "")
        silent = now - self.progress_at
        if self.deadline is not None:
            if now >= self.deadline:
                return "end", (f"the hub answers but the session has been stalled for {silent:.0f} s: "
                               "ending it so that a new one takes over")
            if self.held_back(sock, silent, now):
                return "knock", (f"the session has been stalled for {silent:.0f} s and the hub answers: knocking "
                                 f"(and waiting up to {self.deadline - now:.0f} s more for it to resume)")
            return None, ""
        if silent < self.silent_after or now < self.next_probe:
            return None, ""
        self.next_probe = now + self.probe_every
        if not probe():
            return None, ""
        local = sock.local_address[0]
        if not have_local(local):
            return "end", (f"the hub answers but this host no longer has the session's address {local}: "
                           "the session cannot resume, ending it")
        wait = min(sock.when + self.grace, self.resume_wait)
        self.deadline = now + wait
        if self.held_back(sock, silent, now):
            return "knock", (f"the session has been stalled for {silent:.0f} s and the hub answers: knocking "
                             f"(and waiting up to {wait:.0f} s for it to resume)")
        return "log", (f"the session has been stalled for {silent:.0f} s and the hub answers: "
                       f"waiting up to {wait:.0f} s for it to resume")


def command_line(pid):
    """The argument list of process PID."""
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return [part.decode("utf-8", "surrogateescape") for part in handle.read().split(b"\0")[:-1]]


# A knock dials while the link may drop again: each attempt gives up connecting after KNOCK_CONNECT s (ssh keeps
# the first value of an option, and the command line comes before the config file), so the watchdog is back at
# its post within KNOCK_DEADLINE s whatever the link does.
KNOCK_CONNECT = 3
KNOCK_DEADLINE = 8.0


def knock_command(argv, log_path):
    """The tunnel's own ssh command line, logging to LOG_PATH, one short connect attempt; None unless it forks once
    forwarded (-f)."""
    if not argv or "-f" not in argv:
        return None
    argv = list(argv)
    if "-E" in argv[:-1]:
        argv[argv.index("-E") + 1] = log_path
    return argv[:1] + ["-o", f"ConnectTimeout={KNOCK_CONNECT}", "-o", "ConnectionAttempts=1"] + argv[1:]


def find_process(argv, exclude):
    """The pid of a process of this account running exactly ARGV, other than EXCLUDE, or None."""
    wanted = "\0".join(argv).encode("utf-8", "surrogateescape") + b"\0"
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                if handle.read() == wanted:
                    return int(name)
        except OSError:
            continue
    return None


def knock(pid, attempts=5, pause=0.4, deadline=KNOCK_DEADLINE, run=subprocess.run):
    """Dial a second session with PID's command line until one gets the forwards: its pid, or None.

    The first attempt is usually refused: the reaper ends a stuck session right after the knock's login; a session
    the hub keeps refuses every attempt (and the reaper ends each at once). All attempts end within DEADLINE s: a
    link that drops again during the knock must not keep the watchdog from the session (seen in the lab: a knock
    whose attempts waited out the tunnel's own ConnectTimeout one after another held the watchdog for 33 s)."""
    log_path = os.path.join(os.environ.get("RUNTIME_DIRECTORY", "/tmp"), "knock.log")
    argv = knock_command(command_line(pid), log_path)
    if argv is None:
        return None
    end = time.monotonic() + deadline
    for attempt in range(attempts):
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            done = run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=left, check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            done = False
        if done:
            return find_process(argv, {pid, os.getpid()}) or 0
        if attempt + 1 < attempts:
            time.sleep(min(pause, max(end - time.monotonic(), 0)))
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="revtunnel-watch", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--pid", type=int, required=True, help="the tunnel's ssh process")
    parser.add_argument("--silent-after", type=float, default=4.0,
                        help="seconds without an acknowledgement from the hub before asking it")
    parser.add_argument("--probe-every", type=float, default=1.0, help="seconds between banner probes")
    parser.add_argument("--probe-timeout", type=float, default=2.0, help="seconds a banner probe may take")
    parser.add_argument("--resume-wait", type=float, default=120.0,
                        help="at most this many seconds for a stalled session to resume once the hub answers")
    parser.add_argument("--no-knock", dest="knock", action="store_false",
                        help="never dial a second session to replace one stuck at the hub's end")
    parser.add_argument("--foreground", action="store_true", help="do not detach (for tests)")
    parser.add_argument("--debug", action="store_true", help="print every sample")
    args = parser.parse_args(argv)
    if not args.foreground and os.fork():
        return 0  # the unit's ExecStartPost returns; the watchdog stays in the unit's cgroup
    watch = Watch(args.silent_after, args.probe_every, args.resume_wait)
    output.say(f"revtunnel-watch: watching ssh (pid {args.pid})", sys.stderr)
    pid = args.pid
    while True:
        try:
            sock = session_socket(pid)
        except OSError:
            return 0  # ssh is gone: the unit restarts, and a new watchdog with it
        action, message = watch.step(
            time.monotonic(), sock,
            lambda s=sock: hub_answers(*s.remote_address, args.probe_timeout),
            have_address)
        if action == "knock" and not args.knock:
            action, message = "log", message.replace("knocking", "not knocking (--no-knock)")
        if args.debug and sock:
            output.say(f"revtunnel-watch: unacked {sock.unacked} timer {sock.timer} in {sock.when:.2f} s "
                       f"retransmits {sock.retransmits} probes {sock.probes}", sys.stderr)
        if action:
            output.say(f"revtunnel-watch: {message}", sys.stderr)
        if action == "knock":
            new = knock(pid)
            if new is None:
                output.say("revtunnel-watch: the hub kept this session (it answers through it)", sys.stderr)
            else:
                # The hub gave the ports to the knock: the old session is dead there. Both go; the unit dials again.
                output.say("revtunnel-watch: the hub gave the ports to a new session: ending this one so that the "
                           "unit dials again at once", sys.stderr)
                for stale in (new, pid):
                    with contextlib.suppress(ProcessLookupError):
                        if stale:
                            os.kill(stale, signal.SIGTERM)
                return 0
        if action == "end":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            return 0
        time.sleep(1.0)
