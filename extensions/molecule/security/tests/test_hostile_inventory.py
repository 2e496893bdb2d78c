"""Hostile inventory values stop the run in preflight, before any host changes.

Each case runs the scenario's converge (site.yml) with one value an attacker who can edit the inventory, or
an admin who pasted the wrong thing, could put in. The run must fail with a message that names the host and
the variable, and no host may report a change; the hub's registry and authorized_keys stay byte for byte.
"""

import re

import pytest
import yaml
from conftest import HUB, SPOKES, lab_host, run_playbook

CONVERGE = "extensions/molecule/security/converge.yml"
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", re.M)


def hub_state():
    hub = lab_host(HUB)
    return hub.file("/var/lib/revtunnel/ports.json").sha256sum, hub.file("/etc/ssh/revtunnel/authorized_keys").sha256sum


def spoke_state(spoke):
    node = lab_host(spoke)
    return node.check_output(f"cat /etc/revtunnel/{HUB}.ssh_config; ls -l --time-style=+%s /var/lib/revtunnel")


def run_with(tmp_path, *extra):
    before = hub_state(), [spoke_state(s) for s in SPOKES]
    proc = run_playbook(CONVERGE, *extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    changed = {host: int(n) for host, n in RECAP.findall(proc.stdout)}
    assert changed and not any(changed.values()), f"a host changed before the run stopped: {changed}\n{out[-3000:]}"
    assert (hub_state(), [spoke_state(s) for s in SPOKES]) == before
    return out


def test_a_forward_host_that_would_add_ssh_config_lines_is_refused(tmp_path):
    evil = tmp_path / "evil.yml"
    evil.write_text(yaml.safe_dump({"revtunnel_forwards": [
        {"name": "web", "port": 8080, "host": "localhost:8080\n    PermitLocalCommand yes\n    LocalCommand id"}]}))
    out = run_with(tmp_path, "-e", f"@{evil}")
    assert "revtunnel_forwards" in out and SPOKES[0] in out, out[-3000:]


def test_a_spoke_name_with_a_space_is_refused_before_the_spokes_are_touched(tmp_path):
    extra = tmp_path / "extra.yml"
    # A container that does not exist: if the run went past preflight, it could not touch anything here either.
    absent = {"ansible_connection": "community.docker.docker", "ansible_host": "rt-sec-absent"}
    extra.write_text(yaml.safe_dump({"spokes": {"hosts": {"lab pc-3": absent}}}))
    out = run_with(tmp_path, "-i", str(extra))
    assert "lab pc-3" in out, out[-3000:]


@pytest.mark.parametrize("value", ['192.0.2.0/24",command="id', "10.0.0.0/8\nssh-ed25519 AAAA", "a b"])
def test_a_key_source_that_would_add_key_options_is_refused(tmp_path, value):
    evil = tmp_path / "evil.yml"
    evil.write_text(yaml.safe_dump({"revtunnel_key_from": [value]}))
    out = run_with(tmp_path, "-e", f"@{evil}")
    assert "revtunnel_key_from" in out, out[-3000:]


@pytest.mark.parametrize("variable, value", [("revtunnel_client_hub_user", "admin\nHost *"),
                                             ("revtunnel_lab_name", "x\nHost *\n  ProxyCommand id"),
                                             ("revtunnel_client_spoke_user", "admin\n  LocalCommand id")])
def test_client_values_that_would_add_ssh_config_lines_are_refused(tmp_path, variable, value):
    evil = tmp_path / "evil.yml"
    evil.write_text(yaml.safe_dump({variable: value, "revtunnel_client_ssh_dir": str(tmp_path / "ssh")}))
    proc = run_playbook("playbooks/client.yml", "-e", f"@{evil}")
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert variable in proc.stdout + proc.stderr
    assert not (tmp_path / "ssh").exists(), "nothing may be written before the values are checked"


def test_an_ipv6_hub_address_whose_scope_carries_a_line_is_refused_before_the_spokes_change(tmp_path):
    # Passed the rules before round four and reached the spokes' ssh config (ssh -G expands %h, so it validated).
    evil = tmp_path / "evil.yml"
    evil.write_text(yaml.safe_dump({"revtunnel_hub_address": "fe80::1%h\n    ProxyCommand sh -c 'id > /tmp/x'"}))
    out = run_with(tmp_path, "-e", f"@{evil}")
    assert "revtunnel_hub_address" in out and SPOKES[0] in out, out[-3000:]


@pytest.mark.parametrize("value", ["10999\n", "1e4", "10_000"])
def test_a_port_range_bound_the_local_access_unit_would_carry_as_given_is_refused(tmp_path, value):
    # The registry read the bounds with "| int"; the local-access unit got them as given, and "10999\n" cut the
    # jump to REVTUNNEL_LOCAL off its iptables line, so the access limit did nothing (red team, round four).
    evil = tmp_path / "evil.yml"
    evil.write_text(yaml.safe_dump({"revtunnel_port_range_end": value, "revtunnel_hub_restrict_local_access": True}))
    out = run_with(tmp_path, "-e", f"@{evil}")
    assert "revtunnel_port_range_end" in out and HUB in out, out[-3000:]


def test_a_hub_address_the_spokes_cannot_resolve_stops_them_before_their_account_or_key_change(tmp_path):
    # A valid name that no resolver knows (.invalid is reserved): preflight passes it, the spoke itself cannot.
    out = run_with(tmp_path, "-e", "revtunnel_hub_address=no-such-hub.invalid")
    for spoke in SPOKES:
        assert f"fatal: [{spoke}]" in out and "revtunnel_hub_address=no-such-hub.invalid" in out, out[-3000:]
    assert "nothing was changed on this spoke" in out, out[-3000:]


@pytest.mark.parametrize("variable, value", [
    ("revtunnel_hub_address", "hub.example\n    ProxyCommand sh -c 'id > /tmp/x; exec nc %h %p'"),
    ("revtunnel_hub_address", "-oProxyCommand=id"),
    ("revtunnel_hub_address", "hub %h"),
    # An IPv6 address with a scope: ipaddress took any text after '%' as the scope, a new line included.
    ("revtunnel_hub_address", "fe80::1%h\n    ProxyCommand sh -c 'id > /tmp/x'"),
    ("revtunnel_forwards", [{"name": "web", "port": 8080,
                             "host": "localhost\n    LocalCommand id\n    PermitLocalCommand yes\n    #"}]),
    ("revtunnel_forwards", [{"name": "web", "port": 8080, "host": "localhost#x"}]),
])
def test_a_hub_or_spoke_value_that_would_run_commands_on_the_operators_machine_is_refused(tmp_path, variable, value):
    # The red team's attack on client.yml: values of the hub's and the spokes' own, not the client role's, carried
    # lines into the operator's ssh config. They are checked before anything is written, naming the variable.
    evil = tmp_path / "evil.yml"
    evil.write_text(yaml.safe_dump({variable: value, "revtunnel_client_ssh_dir": str(tmp_path / "ssh")}))
    proc = run_playbook("playbooks/client.yml", "-e", f"@{evil}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert variable in out, out[-3000:]
    assert not (tmp_path / "ssh").exists(), "nothing may be written before the values are checked"
