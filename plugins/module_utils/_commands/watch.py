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
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _probe, _procfs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._commands import output

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

    def __init__(self, silent_after=4.0, probe_every=1.0, resume_wait=120.0, grace=2.0):
        self.silent_after, self.probe_every, self.resume_wait, self.grace = (
            silent_after, probe_every, resume_wait, grace)
        self.before = None
        self.progress_at = None
        self.next_probe = 0.0
        self.deadline = None

    def step(self, now, sock, probe, have_local):
        """One sample; returns (action, message): action is None, 'log' or 'end'."""
        before, self.before = self.before, sock
        if sock is None or self.progress_at is None or progressed(sock, before):
            resumed = self.deadline is not None
            self.progress_at, self.deadline, self.next_probe = now, None, 0.0
            return ("log", "the session resumed") if resumed else (None, "")
        silent = now - self.progress_at
        if self.deadline is not None:
            if now >= self.deadline:
                return "end", (f"the hub answers but the session has been stalled for {silent:.0f} s: "
                               "ending it so that a new one takes over")
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
        return "log", (f"the session has been stalled for {silent:.0f} s and the hub answers: "
                       f"waiting up to {wait:.0f} s for it to resume")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="revtunnel-watch", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--pid", type=int, required=True, help="the tunnel's ssh process")
    parser.add_argument("--silent-after", type=float, default=4.0,
                        help="seconds without an acknowledgement from the hub before asking it")
    parser.add_argument("--probe-every", type=float, default=1.0, help="seconds between banner probes")
    parser.add_argument("--probe-timeout", type=float, default=2.0, help="seconds a banner probe may take")
    parser.add_argument("--resume-wait", type=float, default=120.0,
                        help="at most this many seconds for a stalled session to resume once the hub answers")
    parser.add_argument("--foreground", action="store_true", help="do not detach (for tests)")
    parser.add_argument("--debug", action="store_true", help="print every sample")
    args = parser.parse_args(argv)
    if not args.foreground and os.fork():
        return 0  # the unit's ExecStartPost returns; the watchdog stays in the unit's cgroup
    watch = Watch(args.silent_after, args.probe_every, args.resume_wait)
    output.say(f"revtunnel-watch: watching ssh (pid {args.pid})", sys.stderr)
    while True:
        try:
            sock = session_socket(args.pid)
        except OSError:
            return 0  # ssh is gone: the unit restarts, and a new watchdog with it
        action, message = watch.step(
            time.monotonic(), sock,
            lambda s=sock: hub_answers(*s.remote_address, args.probe_timeout),
            have_address)
        if args.debug and sock:
            output.say(f"revtunnel-watch: unacked {sock.unacked} timer {sock.timer} in {sock.when:.2f} s "
                       f"retransmits {sock.retransmits} probes {sock.probes}", sys.stderr)
        if action:
            output.say(f"revtunnel-watch: {message}", sys.stderr)
        if action == "end":
            with contextlib.suppress(ProcessLookupError):
                os.kill(args.pid, signal.SIGTERM)
            return 0
        time.sleep(1.0)
