# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One look at /proc: every process's stat read once, sshd's monitors found among sshd's own processes."""

from __future__ import annotations

import os
import shutil

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _procfs

BTIME = 1700000000


class Tree:
    """A /proc tree on disk whose title and uid reads are counted."""

    def __init__(self, root):
        self.root = root
        root.mkdir()
        (root / "stat").write_text(f"cpu 1 2 3\nbtime {BTIME}\n")
        self.proc = _procfs.Proc(root, hertz=100)
        self.asked = []
        title, uids = self.proc.title, self.proc.uids
        self.proc.title = lambda pid: self.asked.append(("title", pid)) or title(pid)
        self.proc.uids = lambda pid: self.asked.append(("uids", pid)) or uids(pid)

    def add(self, pid, comm, title, uid=0, ticks=100, ppid=1):
        d = self.root / str(pid)
        d.mkdir(exist_ok=True)
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} " + " ".join(["0"] * 17) + f" {ticks} 0 0\n")
        (d / "cmdline").write_bytes(title.encode() + b"\0")
        (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")

    def retitle(self, pid, title):
        (self.root / str(pid) / "cmdline").write_bytes(title.encode() + b"\0")

    def remove(self, pid):
        shutil.rmtree(self.root / str(pid))


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path / "proc")


def test_one_stat_read_gives_parent_start_ticks_and_command_name(tree):
    tree.add(42, "sshd: x) (y", "sshd: tunnel [priv]", ticks=2200, ppid=7)
    (tree.root / "self").mkdir()
    assert tree.proc.processes() == {42: (7, 2200, "sshd: x) (y")}
    assert _procfs.parse_stat(b"42 (cut") is None


def test_the_look_finds_the_accounts_monitors_among_sshds_own_processes(tree):
    tree.add(100, "sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups")
    tree.add(200, "sshd", "sshd: tunnel [priv]", ticks=500)
    tree.add(201, "sshd", "sshd: tunnel", uid=997, ppid=200)
    tree.add(300, "sshd-session", "sshd-session: tunnel [priv]")
    tree.add(400, "sshd", "sshd: tunnel [priv]", uid=1000)      # another account with the monitor's title
    tree.add(500, "sshd", "sshd: admin [priv]")
    tree.add(600, "python3", "sshd: tunnel [priv]", uid=1000)   # not sshd's program at all
    look = tree.proc.look("tunnel")
    assert look.monitors == [200, 300]
    assert look.children[200] == [201] and look.start_ticks(200) == 500 and look.btime == BTIME
    assert look.is_monitor(200, 500) and not look.is_monitor(200, 501) and not look.is_monitor(201, 100)
    assert ("title", 600) not in tree.asked and ("uids", 600) not in tree.asked, "only sshd's programs are asked"


def test_lasting_answers_are_not_asked_again_and_the_others_are(tree):
    tree.add(100, "sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups")
    tree.add(200, "sshd", "sshd: tunnel [priv]")
    tree.add(201, "sshd", "sshd: tunnel", uid=997, ppid=200)
    tree.proc.look("tunnel")
    tree.asked.clear()
    assert tree.proc.look("tunnel").monitors == [200]
    # A monitor stays one and another account's process never becomes root's: only root's listener is asked again.
    assert {pid for _what, pid in tree.asked} == {100}


def test_a_root_sshd_process_becomes_a_monitor_at_its_login(tree):
    tree.add(200, "sshd-session", "sshd-session: [accepted]")
    assert tree.proc.look("tunnel").monitors == []
    tree.retitle(200, "sshd-session: tunnel [priv]")
    assert tree.proc.look("tunnel").monitors == [200]


def test_a_reused_pid_or_an_exec_is_asked_again(tree):
    tree.add(201, "sshd", "sshd: tunnel", uid=997, ticks=100)
    assert tree.proc.look("tunnel").monitors == []
    # The pid is reused by a root monitor: new start ticks, so the old answer is not taken for it.
    tree.remove(201)
    tree.add(201, "sshd", "sshd: tunnel [priv]", ticks=900)
    look = tree.proc.look("tunnel")
    assert look.monitors == [201] and look.is_monitor(201, 900)
    # The monitor is gone and its pid reused by another account's process with the same title.
    tree.remove(201)
    tree.add(201, "sshd", "sshd: tunnel [priv]", uid=1000, ticks=950)
    assert tree.proc.look("tunnel").monitors == []


def test_a_process_gone_mid_look_is_no_monitor_and_not_remembered(tree):
    tree.add(200, "sshd", "sshd: tunnel [priv]")
    os.remove(tree.root / "200" / "status")
    assert tree.proc.look("tunnel").monitors == []
    tree.add(200, "sshd", "sshd: tunnel [priv]")
    assert tree.proc.look("tunnel").monitors == [200]


def test_the_boot_time_is_read_once_per_look(tree):
    tree.add(200, "sshd", "sshd: tunnel [priv]", ticks=250)
    look = tree.proc.look("tunnel")
    assert tree.proc.started_at(look.start_ticks(200), look.btime) == BTIME + 2.5
    assert tree.proc.started_at(250) == BTIME + 2.5
    assert tree.proc.started_at(None, look.btime) is None


def test_the_look_agrees_with_the_single_reads_on_this_machine():
    proc = _procfs.Proc(hertz=os.sysconf("SC_CLK_TCK"))
    with open("/proc/self/comm", encoding="utf-8") as handle:
        comm = handle.read().rstrip("\n")
    assert proc.processes()[os.getpid()] == (os.getppid(), proc.start_ticks(os.getpid()), comm)
    btime = proc.boot_time()
    assert btime is not None and proc.look("nobody-here").btime == btime
