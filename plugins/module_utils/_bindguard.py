# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hub's bind filter: only the tunnel account may bind a TCP port of the spokes' range.

Pure Python with no Ansible import (ctypes and the bpf() system call; no compiler, no bpftool). The reaper
loads one small eBPF program per address family (cgroup ``bind4``/``bind6`` hooks) and links it to the cgroup
that holds every process of the hub (the parent of PID 1's cgroup: ``/`` on a host, the container's own
cgroup in a Docker lab). A ``bind()`` of a TCP port in the range by any other uid, root included, fails with
EPERM before it can take the port: no listener, no bound-and-connected socket, no TIME_WAIT of a squatter and
no bind() loop racing a tunnel's restart can ever hold a spoke's port. The tunnel account's binds (sshd's
``-R`` listeners run as that account) pass untouched.

Every refused bind is counted in a hash map {uid << 32 | port: count} that the reaper reads to name the
account and the port in its journal. The link lives as long as the reaper's file descriptor: the filter goes
when the reaper stops, and a restarted reaper links it again.

The program (``program()``) and its encoding are pure and unit-tested; ``BindGuard`` does the system calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct

BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_PROG_LOAD, BPF_LINK_CREATE = 0, 1, 4, 5, 28
BPF_MAP_TYPE_HASH = 1
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND = 8, 9
BPF_PSEUDO_MAP_FD = 1
ATTR_SIZE = 128
MAP_ENTRIES = 4096
IPPROTO_TCP = 6
# struct bpf_sock_addr: user_port (network byte order) at 24, protocol at 36.
CTX_USER_PORT, CTX_PROTOCOL = 24, 36
HELPER_MAP_LOOKUP, HELPER_MAP_UPDATE, HELPER_GET_UID_GID = 1, 2, 15
BPF_NOEXIST = 1


def insn(code, dst=0, src=0, off=0, imm=0):
    """One eBPF instruction: opcode, registers, 16-bit offset, 32-bit immediate (little-endian host)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(start, end, uid, map_fd):
    """The filter's instructions: allow (1) unless TCP, port in [start, end] and another uid than UID (0: EPERM).

    A refused bind adds one to the map's count for (uid, port).
    """
    # (opcode, dst, src, offset or label, immediate); labels are resolved to relative jumps below.
    code = [
        ("mov64_x", 6, 1, 0, 0),                       # r6 = ctx
        ("ldx_w", 2, 6, CTX_PROTOCOL, 0),              # r2 = ctx->protocol
        ("jne_k", 2, 0, "allow", IPPROTO_TCP),
        ("ldx_w", 2, 6, CTX_USER_PORT, 0),             # r2 = ctx->user_port (network order)
        ("be", 2, 0, 0, 16),                           # host order
        ("jlt_k", 2, 0, "allow", start),
        ("jgt_k", 2, 0, "allow", end),
        ("mov64_x", 7, 2, 0, 0),                       # r7 = port
        ("call", 0, 0, 0, HELPER_GET_UID_GID),
        ("mov32_x", 0, 0, 0, 0),                       # r0 = uid (lower half)
        ("jeq_k", 0, 0, "allow", uid),
        ("lsh64_k", 0, 0, 0, 32),
        ("or64_x", 0, 7, 0, 0),                        # key = uid << 32 | port
        ("stx_dw", 10, 0, -8, 0),
        ("st_dw", 10, 0, -16, 1),                      # value 1
        ("ld_map", 1, 0, 0, map_fd),
        ("mov64_x", 2, 10, 0, 0),
        ("add64_k", 2, 0, 0, -8),
        ("call", 0, 0, 0, HELPER_MAP_LOOKUP),
        ("jeq_k", 0, 0, "insert", 0),
        ("mov64_k", 1, 0, 0, 1),
        ("xadd_dw", 0, 1, 0, 0),                       # count += 1
        ("ja", 0, 0, "deny", 0),
        ("label", "insert"),
        ("ld_map", 1, 0, 0, map_fd),
        ("mov64_x", 2, 10, 0, 0),
        ("add64_k", 2, 0, 0, -8),
        ("mov64_x", 3, 10, 0, 0),
        ("add64_k", 3, 0, 0, -16),
        ("mov64_k", 4, 0, 0, BPF_NOEXIST),
        ("call", 0, 0, 0, HELPER_MAP_UPDATE),
        ("label", "deny"),
        ("mov64_k", 0, 0, 0, 0),
        ("exit", 0, 0, 0, 0),
        ("label", "allow"),
        ("mov64_k", 0, 0, 0, 1),
        ("exit", 0, 0, 0, 0),
    ]
    return assemble(code)


OPCODES = {
    "mov64_x": 0xbf, "mov64_k": 0xb7, "mov32_x": 0xbc, "add64_k": 0x07, "lsh64_k": 0x67, "or64_x": 0x4f,
    "ldx_w": 0x61, "stx_dw": 0x7b, "st_dw": 0x7a, "xadd_dw": 0xdb, "be": 0xdc,
    "jeq_k": 0x15, "jne_k": 0x55, "jlt_k": 0xa5, "jgt_k": 0x25, "ja": 0x05, "call": 0x85, "exit": 0x95,
}


def assemble(code):
    """Bytes of the program; a label's jump offset counts instructions after the jump (ld_map takes two)."""
    slots, position = {}, 0
    for item in code:
        if item[0] == "label":
            slots[item[1]] = position
        else:
            position += 2 if item[0] == "ld_map" else 1
    out, position = [], 0
    for item in code:
        if item[0] == "label":
            continue
        name, dst, src, off, imm = item
        if name == "ld_map":
            out.append(insn(0x18, dst, BPF_PSEUDO_MAP_FD, 0, imm) + insn(0))
            position += 2
            continue
        if isinstance(off, str):
            off = slots[off] - position - 1
        out.append(insn(OPCODES[name], dst, src, off, imm))
        position += 1
    return b"".join(out)


def decode_key(key):
    """(uid, port) of a map key."""
    return key >> 32, key & 0xFFFF


def cgroup2_mount(mountinfo):
    """The mount point of the unified (v2) cgroup hierarchy in a /proc/self/mountinfo text, or None."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " in line and line.split(" - ", 1)[1].split()[0] == "cgroup2" and len(fields) > 4:
            return fields[4]
    return None


def parent_of_init(cgroup_text):
    """The parent of PID 1's v2 cgroup from its /proc/1/cgroup text ('0::/init.scope' gives '/'), or None."""
    for line in cgroup_text.splitlines():
        if line.startswith("0::"):
            path = line[3:].strip() or "/"
            return os.path.dirname(path.rstrip("/")) or "/"
    return None


def guarded_cgroup(proc="/proc"):
    """The cgroup v2 directory that holds every process of this system: the parent of PID 1's cgroup.

    On a host PID 1 is in /init.scope, so that is the root; in a container it is the container's own cgroup.
    None when there is no unified hierarchy.
    """
    try:
        with open(f"{proc}/self/mountinfo", encoding="utf-8") as handle:
            mount = cgroup2_mount(handle.read())
        with open(f"{proc}/1/cgroup", encoding="utf-8") as handle:
            parent = parent_of_init(handle.read())
    except OSError:
        return None
    if mount is None or parent is None:
        return None
    path = os.path.normpath(mount + "/" + parent)
    return path if os.path.isdir(path) else None


class BindGuard:
    """Load, link and read the filter. Raises OSError when the kernel or the sandbox does not allow it."""

    def __init__(self, start, end, uid, cgroup):
        self.start, self.end, self.uid, self.cgroup = start, end, uid, cgroup
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._nr = BPF_SYSCALL.get(platform.machine())
        if self._nr is None:
            raise OSError(0, f"no bpf() system call number known for {platform.machine()}")
        self.fds = []
        self.map_fd = None
        self.log = ""

    def _bpf(self, cmd, attr):
        buffer = ctypes.create_string_buffer(attr.ljust(ATTR_SIZE, b"\0"), ATTR_SIZE)
        result = self._libc.syscall(self._nr, cmd, buffer, ATTR_SIZE)
        if result < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return result, buffer

    def link(self):
        """Create the map, load both programs and link them to the cgroup."""
        attr = struct.pack("<IIIII", BPF_MAP_TYPE_HASH, 8, 8, MAP_ENTRIES, 0)
        self.map_fd, _buffer = self._bpf(BPF_MAP_CREATE, attr)
        self.fds.append(self.map_fd)
        code = program(self.start, self.end, self.uid, self.map_fd)
        license_ = ctypes.create_string_buffer(b"GPL")
        log = ctypes.create_string_buffer(65536)
        insns = ctypes.create_string_buffer(code, len(code))
        cgroup_fd = os.open(self.cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for attach in (BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND):
                attr = struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, len(code) // 8,
                                   ctypes.addressof(insns), ctypes.addressof(license_), 1, len(log),
                                   ctypes.addressof(log), 0, 0, b"revtunnel_bind", 0, attach)
                try:
                    prog_fd, _buffer = self._bpf(BPF_PROG_LOAD, attr)
                except OSError:
                    self.log = log.value.decode("ascii", "replace")
                    raise
                self.fds.append(prog_fd)
                link_fd, _buffer = self._bpf(BPF_LINK_CREATE, struct.pack("<IIII", prog_fd, cgroup_fd, attach, 0))
                self.fds.append(link_fd)
        finally:
            os.close(cgroup_fd)

    def refused(self):
        """{(uid, port): count} of the binds refused so far."""
        found, key = {}, None
        while True:
            current = ctypes.create_string_buffer(8)
            following = ctypes.create_string_buffer(8)
            if key is not None:
                current.raw = struct.pack("<Q", key)
            attr = struct.pack("<IIQQQ", self.map_fd, 0, ctypes.addressof(current) if key is not None else 0,
                               ctypes.addressof(following), 0)
            try:
                self._bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except OSError:
                break
            key = struct.unpack("<Q", following.raw)[0]
            value = ctypes.create_string_buffer(8)
            lookup = struct.pack("<IIQQQ", self.map_fd, 0, ctypes.addressof(following), ctypes.addressof(value), 0)
            try:
                self._bpf(BPF_MAP_LOOKUP_ELEM, lookup)
            except OSError:
                continue
            found[decode_key(key)] = struct.unpack("<Q", value.raw)[0]
        return found

    def close(self):
        for fd in reversed(self.fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
