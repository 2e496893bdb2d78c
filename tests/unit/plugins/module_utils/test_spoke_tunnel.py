# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which hubs a spoke retires: those that left its inventory, never one that is only missing from this run.

systemctl is a recorder here (it answers ``show`` like systemd does); the files are real, in a temporary
directory. The lab test of the same in the hubs scenario runs the real units.
"""

from __future__ import annotations

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _spoke_tunnel


class Systemd:
    """Answers ``systemctl show`` with every unit enabled and running; records every other call."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[:2] == ["systemctl", "show"]:
            units = [a for a in argv[2:] if a.startswith("revtunnel@")]
            return 0, "\n\n".join(f"Id={u}\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"
                                  "NeedDaemonReload=no" for u in units), ""
        return 0, "", ""

    def stopped(self):
        return [argv[-1] for argv in self.calls if argv[:3] == ["systemctl", "disable", "--now"]]


def conf_dir_with(tmp_path, *hubs):
    conf = tmp_path / "revtunnel"
    conf.mkdir()
    for hub in hubs:
        for suffix in _spoke_tunnel.HUB_FILE_SUFFIXES:
            (conf / (hub + suffix)).write_text(f"{hub}\n")
    return conf


def test_a_hub_of_the_spoke_that_this_run_does_not_configure_keeps_its_tunnel(tmp_path):
    # site.yml --limit hub-a:spokes, or hub-b unreachable: hub-b is not ready, but it is still the spoke's hub.
    conf = conf_dir_with(tmp_path, "hub-a", "hub-b")
    systemd = Systemd()
    result = _spoke_tunnel.apply_tunnels(systemd, [], [], [{"name": "hub-a", "files": []}],
                                         str(tmp_path / "unit"), str(conf), keep=["hub-a", "hub-b"])
    assert result.retired == [] and systemd.stopped() == [], systemd.calls
    assert (conf / "hub-b.ssh_config").exists() and (conf / "hub-b.known_hosts").exists()


def test_a_hub_that_left_the_spokes_inventory_is_retired(tmp_path):
    conf = conf_dir_with(tmp_path, "hub-a", "hub-old")
    systemd = Systemd()
    result = _spoke_tunnel.apply_tunnels(systemd, [], [], [{"name": "hub-a", "files": []}],
                                         str(tmp_path / "unit"), str(conf), keep=["hub-a"])
    assert result.retired == ["hub-old"] and systemd.stopped() == ["revtunnel@hub-old.service"]
    assert sorted(p.name for p in conf.iterdir()) == ["hub-a.known_hosts", "hub-a.ssh_config"]
