# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bind filter's program and where it is linked; the kernel's side is the security scenario's."""

from __future__ import annotations

import struct

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _bindguard


def decode(code):
    """[(opcode, dst, src, offset, immediate)] of a program's bytes."""
    out = []
    for at in range(0, len(code), 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, at)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def test_the_program_checks_tcp_the_range_and_the_uid_then_counts_and_refuses():
    insns = decode(_bindguard.program(10000, 10999, 997, map_fd=42))
    immediates = [imm for _op, _dst, _src, _off, imm in insns]
    assert 6 in immediates and 10000 in immediates and 10999 in immediates and 997 in immediates
    assert [op for op, *_rest in insns].count(0x95) == 2, "two exits: refuse (0) and allow (1)"
    # Every jump lands inside the program, on an instruction that is not the second half of a map load.
    halves = {n + 1 for n, insn in enumerate(insns) if insn[0] == 0x18}
    for n, (op, _dst, _src, off, _imm) in enumerate(insns):
        if op in (0x05, 0x15, 0x25, 0x55, 0xa5):
            target = n + 1 + off
            assert 0 <= target < len(insns) and target not in halves, (n, target)
    # Both map loads carry the map's fd as a pseudo map fd.
    assert [(src, imm) for op, _dst, src, _off, imm in insns if op == 0x18] == [(1, 42), (1, 42)]
    # The last two instructions allow, the two before them refuse.
    assert insns[-2][:1] + insns[-2][4:] == (0xb7, 1) and insns[-4][:1] + insns[-4][4:] == (0xb7, 0)


def test_a_label_resolves_to_a_relative_jump():
    code = decode(_bindguard.assemble([("ja", 0, 0, "end", 0), ("mov64_k", 0, 0, 0, 1),
                                       ("ld_map", 1, 0, 0, 3), ("label", "end"), ("exit", 0, 0, 0, 0)]))
    assert code[0][3] == 3  # over one instruction and a two-slot map load


def test_map_keys_name_the_uid_and_the_port():
    assert _bindguard.decode_key(1000 << 32 | 10005) == (1000, 10005)


MOUNTINFO_HYBRID = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
35 30 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
36 30 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
"""
MOUNTINFO_V1 = "36 30 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"


def test_the_unified_hierarchy_is_found_in_mountinfo():
    assert _bindguard.cgroup2_mount(MOUNTINFO_HYBRID) == "/sys/fs/cgroup/unified"
    assert _bindguard.cgroup2_mount("24 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n") == "/sys/fs/cgroup"
    assert _bindguard.cgroup2_mount(MOUNTINFO_V1) is None


@pytest.mark.parametrize(("text", "parent"), [
    ("0::/init.scope\n", "/"),                                            # a host: the whole system
    ("1:name=systemd:/docker/abc/init.scope\n0::/docker/abc/init.scope\n", "/docker/abc"),  # a Docker lab
    ("0::/\n", "/"),                                                      # a private cgroup namespace
    ("1:name=systemd:/init.scope\n", None),                               # no unified hierarchy
])
def test_the_filter_covers_the_parent_of_pid_1s_cgroup(text, parent):
    assert _bindguard.parent_of_init(text) == parent
