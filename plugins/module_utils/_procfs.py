# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one reader of /proc: the host's TCP sockets, and the few process facts the hub's reaper checks.

What /proc cannot do, ending a TIME_WAIT socket, goes through the kernel's sock_diag netlink interface.

Pure Python with no Ansible import. The registry reads which ports are taken, the banner probe which socket
holds a port (a restarted tunnel binds a new one), the reaper and the status which account owns a listener
and which sshd session holds it. Everything takes a root (``/proc`` or ``/proc/net/tcp`` paths) that the
tests point at a fake tree.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import pwd
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

PROC_NET_TCP = ("/proc/net/tcp", "/proc/net/tcp6")
TCP_LISTEN = "0A"
TCP_ESTABLISHED = "01"
TCP_TIME_WAIT = "06"
# Timer kinds of the tr column: 1 retransmission, 4 zero-window probe (also after local drops).
TIMER_RETRANSMIT, TIMER_PROBE0 = 1, 4
USER_HZ = 100


@dataclass(frozen=True)
class TcpSocket:
    """One line of /proc/net/tcp{,6}: local port, state (hex, 0A LISTEN, 01 ESTABLISHED), owner uid, inode (as
    text), the raw local and remote addresses, and the kernel's view of the connection: bytes sent and not yet
    acknowledged, the running timer's kind and seconds left, retransmissions and unanswered probes."""

    port: int
    state: str
    uid: int
    inode: str
    local: str = ""
    remote: str = ""
    unacked: int = 0
    timer: int = 0
    when: float = 0.0
    retransmits: int = 0
    probes: int = 0

    @property
    def local_address(self):
        """(ip, port) of the local end."""
        return decode_address(f"{self.local}:{self.port:04X}")

    @property
    def remote_address(self):
        """(ip, port) of the remote end."""
        return decode_address(self.remote)


def decode_address(text):
    """'0C2AD50A:A9B4' (kernel byte order per 32-bit word) -> ('10.213.42.12', 43444); v4-mapped v6 as v4."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)


def _connection(fields):
    """unacked, timer, when (s), retransmits and probes of a line's columns 4-8, zeros where they are missing."""
    if len(fields) < 9:
        return {}
    timer, when = fields[5].split(":")
    when = int(when, 16)
    if when >= 1 << 31:  # printed as unsigned: an already expired timer
        when = 0
    return {"unacked": int(fields[4].split(":")[0], 16), "timer": int(timer, 16), "when": when / USER_HZ,
            "retransmits": int(fields[6], 16), "probes": int(fields[8])}


def parse_tcp(text):
    """Every socket of one /proc/net/tcp{,6} text; lines that do not parse are skipped (uid -1 and inode ""
    where a line is cut short)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        local, _sep, port_hex = fields[1].rpartition(":")
        try:
            found.append(TcpSocket(port=int(port_hex, 16), state=fields[3],
                                   uid=int(fields[7]) if len(fields) > 7 else -1,
                                   inode=fields[9] if len(fields) > 9 else "", local=local, remote=fields[2],
                                   **_connection(fields)))
        except ValueError:
            continue
    return found


def tcp_sockets(paths=PROC_NET_TCP, required=False):
    """Every TCP socket of this network namespace; tcp6 may be absent when IPv6 is off.

    With ``required`` a host with neither table raises FileNotFoundError (a registry needs to know).
    """
    found, read_any = [], False
    for path in paths:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                found.extend(parse_tcp(handle.read()))
        except FileNotFoundError:
            continue
        read_any = True
    if required and not read_any:
        raise FileNotFoundError(f"cannot read listening sockets from {', '.join(paths)}")
    return found


def listeners(paths=PROC_NET_TCP, required=False):
    """{port: [TcpSocket, ...]} of every LISTEN socket, any address, sorted by inode: one read of /proc."""
    table = {}
    for sock in tcp_sockets(paths, required):
        if sock.state == TCP_LISTEN:
            table.setdefault(sock.port, []).append(sock)
    return {port: sorted(socks, key=lambda s: s.inode) for port, socks in table.items()}


def listening_ports(paths=PROC_NET_TCP, required=False):
    """The set of ports with a LISTEN socket."""
    return set(listeners(paths, required))


def listening_sockets(paths=PROC_NET_TCP):
    """{port: socket inodes (as strings, sorted)} of every LISTEN socket."""
    return {port: sorted({s.inode for s in socks}) for port, socks in listeners(paths).items()}


def listening_inodes(port, paths=PROC_NET_TCP):
    """Socket inodes (as strings, sorted) of the LISTEN sockets on ``port``, any address.

    A new tunnel session binds a new socket, so a changed inode tells a restarted tunnel from the
    one it replaces; unlike ``ss -p`` this needs no right over the tunnel account's processes.
    """
    return listening_sockets(paths).get(port, [])


def connection(remote, sockets):
    """The ESTABLISHED socket whose remote end is REMOTE (ip, port), or None: sshd's end of a session."""
    return next((s for s in sockets if s.state == TCP_ESTABLISHED and s.remote_address == tuple(remote)), None)


def waiting_for_retransmission(sock, min_wait):
    """Whether SOCK has data the peer has not acknowledged, is past its first re-sends, and sends again only in
    MIN_WAIT s or later: nothing new gets through it before then, whatever the link does meanwhile (TCP's
    backoff doubles the wait after each unanswered re-send, up to 2 min)."""
    return (sock is not None and sock.unacked > 0 and sock.timer == TIMER_RETRANSMIT and sock.retransmits >= 2
            and sock.when >= min_wait)


def account(uid):
    """The account name of UID, or 'uid N' when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def account_uid(name):
    """The uid of account NAME, or None when there is no such account."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def foreign_holders(sockets, ports, uid):
    """The sockets on PORTS (local side) that an account other than UID holds, TIME_WAIT aside (the kernel
    keeps no owner for those): listeners, and sockets bound to the port and connected out."""
    ports = set(ports)
    return [s for s in sockets
            if s.port in ports and s.state != TCP_TIME_WAIT and s.uid != uid and s.uid >= 0
            and (s.state == TCP_LISTEN or s.inode not in ("", "0"))]


NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
NLMSG_DONE, NLMSG_ERROR = 3, 2
# struct inet_diag_msg is 72 bytes: family, state, timer, retrans, the socket id (48), expires, queues, uid, inode.
DIAG_MSG = struct.Struct("=BBBB48sIIIII")


SOCK_DESTROY = 21


def _diag_ids(payload):
    """The raw socket ids (48 bytes: ports, addresses, interface, cookie) and families of a sock_diag dump."""
    found, offset, done = [], 0, False
    while offset + 16 <= len(payload):
        length, kind = struct.unpack_from("=IH", payload, offset)
        if length < 16:
            break
        body = payload[offset + 16:offset + length]
        offset += (length + 3) & ~3
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            done = True
        elif kind == SOCK_DIAG_BY_FAMILY and len(body) >= DIAG_MSG.size:
            family, _state, _timer, _retrans, sockid = DIAG_MSG.unpack_from(body)[:5]
            found.append((family, sockid))
    return found, done


def destroy_time_wait(port):
    """End the TIME_WAIT sockets whose local port is PORT (sock_diag SOCK_DESTROY); how many were ended.

    A squatter that accepted and closed connections leaves them, and without SO_REUSEADDR of its own they keep sshd
    from binding the port for 60 s after the squatter is gone. Needs CAP_NET_ADMIN and a kernel that destroys
    TIME_WAIT sockets; raises OSError otherwise.
    """
    ended = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)
        for family in (socket.AF_INET, socket.AF_INET6):
            request = struct.pack("=BBBBI48s", family, socket.IPPROTO_TCP, 0, 0, 1 << int(TCP_TIME_WAIT, 16),
                                  b"\0" * 48)
            nl.send(struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + request)
            ids, done = [], False
            while not done:
                part, done = _diag_ids(nl.recv(65536))
                ids.extend(part)
            for fam, sockid in ids:
                if struct.unpack_from(">H", sockid)[0] != port:
                    continue
                request = struct.pack("=BBBBI48s", fam, socket.IPPROTO_TCP, 0, 0, 1 << int(TCP_TIME_WAIT, 16), sockid)
                nl.send(struct.pack("=IHHII", 16 + len(request), SOCK_DESTROY, 0x5, 2, 0) + request)
                reply = nl.recv(65536)
                length, kind = struct.unpack_from("=IH", reply)
                error = struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
                if error:
                    raise OSError(-error, os.strerror(-error))
                ended += 1
    return ended


# The command names (stat's field 2) of sshd's session monitor: OpenSSH 9.2 and OpenSSH 10.
MONITOR_COMMS = frozenset({"sshd", "sshd-session"})


@functools.lru_cache(maxsize=8)
def _monitor_title(user):
    """The title of sshd's privileged monitor of a session of USER: "sshd: USER [priv]" or "sshd-session: ..."."""
    return re.compile(r"^sshd(-session)?: " + re.escape(user) + r" \[priv\]$")


def parse_stat(raw: bytes) -> tuple[int, int, str] | None:
    """(parent pid, start ticks, command name) of one /proc/PID/stat, or None when it does not parse."""
    text = raw.decode("utf-8", "replace")
    # The command name may hold spaces and parentheses: it ends at the last ')'.
    close = text.rfind(")")
    fields = text[close + 2:].split()
    try:
        return int(fields[1]), int(fields[19]), text[text.find("(") + 1:close]
    except (IndexError, ValueError):
        return None


class Look:
    """One pass over /proc: {pid: (parent pid, start ticks, command name)} of every process, the monitors of the
    tunnel account's sessions among them (sorted), each one's children, and the boot time, for one round."""

    def __init__(self, processes: dict[int, tuple[int, int, str]], monitors: list[int], btime: int | None):
        self.processes = processes
        self.monitors = monitors
        self.btime = btime
        self._monitors = set(monitors)
        self.children: dict[int, list[int]] = {}
        for pid in sorted(processes):
            self.children.setdefault(processes[pid][0], []).append(pid)

    def start_ticks(self, pid: int) -> int | None:
        found = self.processes.get(pid)
        return found[1] if found else None

    def is_monitor(self, pid: int, start_ticks: int | None) -> bool:
        """Whether PID, started at START_TICKS, was a monitor of the account's sessions in this look."""
        return pid in self._monitors and start_ticks is not None and self.start_ticks(pid) == start_ticks


class Proc:
    """The few facts the reaper reads from /proc (a fake tree in tests)."""

    def __init__(self, root: Path = Path("/proc"), hertz: int = 100):
        self.root = Path(root)
        self.hertz = hertz
        # {(pid, start ticks, command name, user): whether a monitor}: the answers that last the process's life.
        self._verdicts: dict[tuple[int, int, str, str], bool] = {}

    def start_ticks(self, pid: int) -> int | None:
        """Field 22 of /proc/PID/stat (start time since boot, in clock ticks), or None if gone."""
        try:
            parsed = parse_stat((self.root / str(pid) / "stat").read_bytes())
        except OSError:
            return None
        return parsed[1] if parsed else None

    def boot_time(self) -> int | None:
        """The kernel's boot time (btime of /proc/stat, wall-clock seconds), or None when it cannot be read.

        The kernel derives it from the wall clock, so a clock step moves it: read it once per look, not once a boot.
        """
        try:
            return next(int(line.split()[1]) for line in (self.root / "stat").read_text().splitlines()
                        if line.startswith("btime "))
        except (OSError, StopIteration, ValueError, IndexError):
            return None

    def started_at(self, start_ticks: int | None, btime: int | None = None) -> float | None:
        """The wall-clock time a process started: the kernel's boot time (BTIME, else read now) plus its ticks."""
        if start_ticks is None:
            return None
        if btime is None:
            btime = self.boot_time()
        if btime is None:
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
        if title is None or _monitor_title(user).match(title) is None:
            return False
        uids = self.uids(pid)
        return bool(uids) and all(u == 0 for u in uids)

    def _pids(self) -> list[int]:
        try:
            return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())
        except OSError:
            return []

    def processes(self) -> dict[int, tuple[int, int, str]]:
        """{pid: (parent pid, start ticks, command name)} of every process: one read of each one's stat."""
        found = {}
        root = str(self.root)
        try:
            names = os.listdir(root)
        except OSError:
            return found
        for name in names:
            if not name.isdigit():
                continue
            try:
                handle = os.open(f"{root}/{name}/stat", os.O_RDONLY)
            except OSError:
                continue
            try:
                raw = os.read(handle, 4096)
            except OSError:
                continue
            finally:
                os.close(handle)
            parsed = parse_stat(raw)
            if parsed is not None:
                found[int(name)] = parsed
        return found

    def look(self, user: str) -> Look:
        """Every process once, and which of them are monitors of a session of USER (see Look).

        Only sshd's own binaries are asked for their title and uids (the monitor is always one of them, and journald
        names the same command for its lines), and each process only until its answer can no longer change: a
        monitor stays one until it exits, and a process of another account never becomes root's monitor (short of
        root's help, which is out of scope). A root sshd process that is not a monitor yet (before its login) is
        asked again at every look. A process is known by its pid, start ticks and command name: a reused pid or an
        exec is a new process.
        """
        processes = self.processes()
        lasting, monitors = {}, []
        for pid in sorted(processes):
            _ppid, ticks, comm = processes[pid]
            if comm not in MONITOR_COMMS:
                continue
            key = (pid, ticks, comm, user)
            verdict = self._verdicts.get(key)
            if verdict is None:
                verdict, lasts = self._monitor_verdict(pid, user)
            else:
                lasts = True
            if lasts:
                lasting[key] = verdict
            if verdict:
                monitors.append(pid)
        self._verdicts = lasting
        return Look(processes, monitors, self.boot_time())

    def _monitor_verdict(self, pid: int, user: str) -> tuple[bool, bool]:
        """(whether PID is a monitor of a session of USER, whether that answer lasts the process's life)."""
        title = self.title(pid)
        uids = self.uids(pid) if title is not None else None
        if not uids:
            return False, False
        if any(u != 0 for u in uids):
            return False, True
        monitor = _monitor_title(user).match(title) is not None
        return monitor, monitor

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
        """The inodes of every listening TCP socket of this network namespace."""
        paths = (str(self.root / "net" / "tcp"), str(self.root / "net" / "tcp6"))
        return {int(s.inode) for socks in listeners(paths).values() for s in socks if s.inode.isdigit()}

    def held_listener(self, monitor: int, listening: set[int], children: dict[int, list[int]]) -> int | None:
        """The inode of a listening socket the session of MONITOR (it or its children) holds, or None.

        Raises PermissionError when the fds of the session's unprivileged child cannot be read.
        """
        for pid in [monitor, *children.get(monitor, [])]:
            held = self.socket_inodes(pid) & listening
            if held:
                return min(held)
        return None

    def socket_holders(self, inodes: set[int]) -> dict[int, list[int]]:
        """{inode: [pids]} of the processes holding these socket inodes, for the processes whose fds can be read
        (all of them with CAP_SYS_PTRACE; without it root reads only root's and dumpable same-uid ones)."""
        found: dict[int, list[int]] = {}
        for pid in self._pids():
            try:
                held = self.socket_inodes(pid) & inodes
            except (PermissionError, ProcessLookupError):
                continue
            for inode in held:
                found.setdefault(inode, []).append(pid)
        return found
