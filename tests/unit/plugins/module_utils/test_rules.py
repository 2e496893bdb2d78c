# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one rulebook: every value that reaches a file ssh, sshd or systemd reads is refused when it could add a line,
an option, a token or a comment, and the message names the variable."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _rules

HOSTILE = {
    "a newline": "good\n    ProxyCommand sh -c 'id > /tmp/x'",
    "a space": "two words",
    "a percent token": "%h",
    "a comment": "host#x",
    "an option": "-oProxyCommand=id",
    # ipaddress reads everything after '%' as an IPv6 scope, a line break included (red team, round four).
    "an IPv6 scope carrying a line": "fe80::1%h\n    ProxyCommand sh -c id",
    "non-ASCII digits": "\u0663\u0660",
    "a number behind a line break": "\n30",
    "a number before a carriage return": "30\r",
}


def key(seed="a"):
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + hashlib.sha256(seed.encode()).digest()
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


SPOKE = {"revtunnel_hub_group": "hub", "hubs": ["hub-1"], "hub_addresses": {"hub-1": "hub.example.org"},
         "hub_ports": {"hub-1": "22"}, "inventory_hostname": "pc-1", "revtunnel_user": "tunnel",
         "revtunnel_spoke_user": "revtunnel", "revtunnel_spoke_home": "/var/lib/revtunnel",
         "revtunnel_local_ssh_port": 22, "revtunnel_forwards": [{"name": "web", "port": 8080, "host": "localhost"}],
         "revtunnel_server_alive_interval": 3, "revtunnel_server_alive_count_max": 40,
         "revtunnel_connect_timeout": 5, "revtunnel_restart_sec": 0.2, "revtunnel_retry_jitter_ms": 2000,
         "revtunnel_wait_timeout": 90, "revtunnel_restart_delay": 3, "revtunnel_spoke_penalty_exempt": True,
         "revtunnel_state": "present"}
HUB = {"revtunnel_user": "tunnel", "revtunnel_jump_user": "revtunnel-jump", "revtunnel_hub_local_access_users": [],
       "revtunnel_registry_path": "/var/lib/revtunnel/ports.json", "revtunnel_port_range_start": 10000,
       "revtunnel_port_range_end": "10999",
       "revtunnel_authorized_keys_dir": "/etc/ssh/revtunnel",
       "revtunnel_metrics_textfile_dir": "/var/lib/prometheus/node-exporter", "revtunnel_max_startups": "100:30:400",
       "revtunnel_per_source_max_startups": 10, "revtunnel_client_alive_interval": 30,
       "revtunnel_client_alive_count_max": 4, "revtunnel_reaper_idle_grace": 20, "revtunnel_reaper_window": 300,
       "revtunnel_reaper_max_replacements": 3, "revtunnel_reaper_hold": 600, "revtunnel_metrics_interval": 30,
       "revtunnel_metrics": "auto", "records_dir": "/srv/lab/.revtunnel", "hubs": ["hub-1"], "spokes": ["pc-1"],
       "revtunnel_operators": [{"name": "alice", "key": key() + " alice@laptop", "spokes": ["pc-1"]}],
       "revtunnel_prune_ports": True, "revtunnel_reaper_enabled": "yes", "revtunnel_hub_bind_filter": "true",
       "revtunnel_hub_harden_crypto": False, "revtunnel_hub_restrict_local_access": "off "}
CLIENT = {"revtunnel_lab_name": "mylab", "revtunnel_client_ssh_dir": "~/.ssh", "revtunnel_client_hub_user": "alice",
          "revtunnel_client_spoke_user": "alice.b", "revtunnel_client_identity_file": "~/.ssh/id_ed25519",
          "revtunnel_client_hub_address": None, "revtunnel_client_hub_port": None,
          "hubs": {"hub-1": {"address": "hub.example.org", "port": 22}},
          "spokes": {"pc-1": {"forwards": [{"name": "web", "port": 8080}]}}}


def test_sound_values_pass():
    assert _rules.check_spoke(SPOKE) == []
    assert _rules.check_hub(HUB) == []
    assert _rules.check_client(CLIENT) == []


def spoke_with(path, value):
    values = {**SPOKE, "hub_addresses": dict(SPOKE["hub_addresses"]), "hub_ports": dict(SPOKE["hub_ports"])}
    if path == "address":
        values["hub_addresses"]["hub-1"] = value
    elif path == "port":
        values["hub_ports"]["hub-1"] = value
    elif path == "forward host":
        values["revtunnel_forwards"] = [{"name": "web", "port": 8080, "host": value}]
    elif path == "forward port":
        values["revtunnel_forwards"] = [{"name": "web", "port": value}]
    else:
        values[path] = value
    return values


SPOKE_VALUES = {
    "address": "revtunnel_hub_address of hub hub-1", "port": "revtunnel_hub_port of hub hub-1",
    "revtunnel_user": "revtunnel_user", "revtunnel_spoke_user": "revtunnel_spoke_user",
    "revtunnel_spoke_home": "revtunnel_spoke_home", "revtunnel_local_ssh_port": "revtunnel_local_ssh_port",
    "forward host": "revtunnel_forwards 'web' has host", "forward port": "revtunnel_forwards 'web' port",
    "revtunnel_server_alive_interval": "revtunnel_server_alive_interval",
    "revtunnel_connect_timeout": "revtunnel_connect_timeout", "revtunnel_restart_sec": "revtunnel_restart_sec",
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("value", list(SPOKE_VALUES))
def test_every_spoke_value_its_files_carry_refuses_what_could_add_a_line_or_an_option(value, hostile):
    errors = _rules.check_spoke(spoke_with(value, HOSTILE[hostile]))
    assert len(errors) == 1 and SPOKE_VALUES[value] in errors[0], errors


HUB_VALUES = ("revtunnel_user", "revtunnel_jump_user", "revtunnel_registry_path", "revtunnel_authorized_keys_dir",
              "revtunnel_metrics_textfile_dir", "revtunnel_max_startups", "revtunnel_per_source_max_startups",
              "revtunnel_client_alive_interval", "revtunnel_reaper_idle_grace", "revtunnel_metrics_interval",
              # Written as given into the local-access unit's iptables lines: "10999\n" dropped the rule's jump
              # (red team, round four).
              "revtunnel_port_range_start", "revtunnel_port_range_end")


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("value", HUB_VALUES)
def test_every_hub_value_its_files_carry_refuses_what_could_add_a_line_or_an_option(value, hostile):
    errors = _rules.check_hub({**HUB, value: HOSTILE[hostile]})
    assert errors and value in errors[0], errors


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("field", ["name", "key", "spokes"])
def test_an_operator_entry_refuses_hostile_values(field, hostile):
    operator = {"name": "alice", "key": key(), "spokes": ["pc-1"]}
    operator[field] = HOSTILE[hostile] if field != "spokes" else [HOSTILE[hostile]]
    errors = _rules.check_hub({**HUB, "revtunnel_operators": [operator]})
    assert errors and "revtunnel_operators" in errors[0], errors


def test_an_operator_key_with_options_or_a_damaged_key_is_refused():
    for bad in ('command="id" ' + key(), key()[:-8] + "AAAAAAA=", "ssh-ed25519 " + base64.b64encode(
            struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 31) + b"x" * 31).decode()):
        errors = _rules.check_hub({**HUB, "revtunnel_operators": [{"name": "alice", "key": bad, "spokes": "all"}]})
        assert errors and "revtunnel_operators 'alice' key" in errors[0], (bad, errors)


def client_with(path, value):
    values = {**CLIENT, "hubs": {"hub-1": dict(CLIENT["hubs"]["hub-1"])},
              "spokes": {"pc-1": {"forwards": [dict(f) for f in CLIENT["spokes"]["pc-1"]["forwards"]]}}}
    if path == "hub address":
        values["hubs"]["hub-1"]["address"] = value
    elif path == "hub port":
        values["hubs"]["hub-1"]["port"] = value
    elif path == "forward host":
        values["spokes"]["pc-1"]["forwards"][0]["host"] = value
    else:
        values[path] = value
    return values


CLIENT_VALUES = {
    "revtunnel_lab_name": "revtunnel_lab_name", "revtunnel_client_ssh_dir": "revtunnel_client_ssh_dir",
    "revtunnel_client_hub_user": "revtunnel_client_hub_user",
    "revtunnel_client_spoke_user": "revtunnel_client_spoke_user",
    "revtunnel_client_identity_file": "revtunnel_client_identity_file",
    "revtunnel_client_hub_address": "revtunnel_client_hub_address",
    "revtunnel_client_hub_port": "revtunnel_client_hub_port",
    "hub address": "revtunnel_hub_address (or ansible_host) of hub hub-1",
    "hub port": "revtunnel_hub_port of hub hub-1",
    "forward host": "revtunnel_forwards of spoke pc-1",
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("value", list(CLIENT_VALUES))
def test_every_value_of_the_operators_config_refuses_what_could_add_a_line_or_an_option(value, hostile):
    errors = _rules.check_client(client_with(value, HOSTILE[hostile]))
    assert len(errors) == 1 and CLIENT_VALUES[value] in errors[0], errors


def test_addresses_and_names_that_are_plain_pass():
    for good in ("10.1.2.3", "2001:db8::1", "hub-1.example.org"):
        assert _rules.address(good, "x") == good
    for bad in ("", "hub.example.", "-hub", "hub\n", "[::1]", "a b"):
        with pytest.raises(_rules.RuleError):
            _rules.address(bad, "x")


@pytest.mark.parametrize("bad", ["fe80::1%eth0", "::1%h", "fe80::1%x\nProxyCommand id", "fe80::1%a b"])
def test_an_ipv6_address_with_a_scope_is_refused_as_it_would_carry_a_token_or_a_line(bad):
    with pytest.raises(_rules.RuleError):
        _rules.address(bad, "x")
    assert _rules.key_from(["fe80::/64"], "x") == ("fe80::/64",)
    with pytest.raises(_rules.RuleError):
        _rules.key_from(["fe80::%h/64"], "x")


@pytest.mark.parametrize("bad", ["\u0663\u0660", "\uff13\uff10", " 30", "30\n", "\u00a030", "3\u200b0"])
def test_a_number_is_plain_ascii_digits_as_it_is_written_into_units_and_configs_as_given(bad):
    with pytest.raises(_rules.RuleError):
        _rules.number(bad, "x", 1, 3600)
    errors = _rules.check_hub({**HUB, "revtunnel_max_startups": bad})
    assert errors and "revtunnel_max_startups" in errors[0], errors


@pytest.mark.parametrize("value", ["10999\n", "1e4", "10_000", "+10000", "\uff11\uff10\uff10\uff10\uff10", 80, 70000])
def test_a_port_range_bound_is_plain_digits_within_the_unprivileged_ports(value):
    # The registry took "| int" of each bound, which Python reads from all of these; the unit got the text as given.
    errors = _rules.check_hub({**HUB, "revtunnel_port_range_end": value})
    assert errors and "revtunnel_port_range_end" in errors[0], errors


@pytest.mark.parametrize("start, end, local", [(40000, 40999, "32768\t60999\n"), (30000, 32768, "32768\t60999"),
                                               (60999, 61999, "32768 60999"), (10000, 10999, "10500\t20000\n")])
def test_a_port_range_inside_the_hubs_ephemeral_ports_is_refused(start, end, local):
    # Red team, this round: with ip_local_port_range at 10000-10999, a hub account took a stopped spoke's port by
    # connect() alone (the kernel's automatic bind, which the bind filter never sees) and kept it.
    errors = _rules.check_hub({**HUB, "revtunnel_port_range_start": start, "revtunnel_port_range_end": str(end),
                               "local_port_range": local})
    assert len(errors) == 1, errors
    assert "revtunnel_port_range_start, revtunnel_port_range_end" in errors[0], errors
    assert "net.ipv4.ip_local_port_range" in errors[0], errors


@pytest.mark.parametrize("local", ["32768\t60999\n", "11000 60999", "1024 9999", "", None, "garbage"])
def test_a_port_range_outside_the_hubs_ephemeral_ports_passes(local):
    assert _rules.check_hub({**HUB, "local_port_range": local}) == []


@pytest.mark.parametrize("value", ["ture", "enabled", 2, "", None, "true\n    ProxyCommand id", 1.5, [True]])
@pytest.mark.parametrize("name", _rules.HUB_SWITCHES + _rules.SPOKE_SWITCHES)
def test_a_switch_that_is_not_a_boolean_is_refused_not_read_as_false(name, value):
    # Red team, this round: the bool filter reads "ture" as false (a deprecation warning only), which would have
    # turned the bind filter or the penalty exemption off without a word.
    errors = (_rules.check_hub if name in _rules.HUB_SWITCHES else _rules.check_spoke)(
        {**(HUB if name in _rules.HUB_SWITCHES else SPOKE), name: value})
    assert len(errors) == 1 and errors[0].startswith(name), errors


@pytest.mark.parametrize("value", ["Absent", "removed", None])
def test_a_spoke_state_other_than_present_or_absent_is_refused(value):
    errors = _rules.check_spoke({**SPOKE, "revtunnel_state": value})
    assert len(errors) == 1 and "revtunnel_state" in errors[0], errors


@pytest.mark.parametrize("value, refused", [(0, True), (199, True), (200, False), (600000, False)])
def test_a_retry_jitter_below_200_ms_is_refused(value, refused):
    # RestartSec is 0: the jitter alone spaces the attempts against a hub that refuses them.
    errors = _rules.check_spoke({**SPOKE, "revtunnel_retry_jitter_ms": value})
    assert bool(errors) is refused and all("revtunnel_retry_jitter_ms" in e for e in errors), errors


SYSTEM_OK = "include=0\niptables=0\nports=32768\t60999\n"


def test_the_hubs_system_read_passes_when_sshd_reads_dropins_and_iptables_is_there():
    assert _rules.check_hub({**HUB, "hub_system": SYSTEM_OK, "revtunnel_hub_restrict_local_access": True}) == []


def test_an_sshd_that_ignores_dropins_is_refused_naming_the_line_to_add():
    errors = _rules.check_hub({**HUB, "hub_system": SYSTEM_OK.replace("include=0", "include=1")})
    assert errors == [e for e in errors if "Include /etc/ssh/sshd_config.d/*.conf" in e] and len(errors) == 1


@pytest.mark.parametrize("switch, refused", [(True, True), ("yes", True), ("off ", False), (False, False)])
def test_the_local_access_limit_without_iptables_is_refused_only_when_asked_for(switch, refused):
    errors = _rules.check_hub({**HUB, "hub_system": SYSTEM_OK.replace("iptables=0", "iptables=1"),
                               "revtunnel_hub_restrict_local_access": switch})
    assert errors == (["revtunnel_hub_restrict_local_access needs /usr/sbin/iptables and /usr/sbin/ip6tables; "
                       "install the iptables package on the hub or set it to false"] if refused else [])


def test_the_ephemeral_range_is_read_from_the_hubs_system_read():
    errors = _rules.check_hub({**HUB, "hub_system": "include=0\niptables=0\nports=10500 60999\n"})
    assert len(errors) == 1 and "ephemeral ports 10500-60999" in errors[0], errors


def test_an_empty_hub_group_and_a_host_in_both_groups_are_refused():
    assert _rules.check_hub({**HUB, "hubs": []}) == ["the inventory group 'hub' holds no host; put the hub (or the "
                                                     "hubs) in it"]
    errors = _rules.check_hub({**HUB, "hubs": ["pc-1"], "revtunnel_spokes_group": "lab"})
    assert "host(s) pc-1 are in both groups 'hub' and 'lab': a host is either the hub or a spoke" in errors, errors
