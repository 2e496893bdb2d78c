"""Testinfra checks of the lab nodes: systemd, sshd and per-node host keys."""

import pytest


def journal(host, unit):
    """Last lines of a unit's journal, to explain a failed check."""
    return host.run("journalctl --no-pager -n 30 -u %s", unit).stdout


def test_systemd_finished_booting(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    failed = host.run("systemctl --failed --no-legend --plain").stdout
    assert state in ("running", "degraded"), f"system is {state}; failed units:\n{failed}"


@pytest.mark.parametrize("unit", ["ssh.service", "revtunnel-lab-ssh-hostkeys.service"])
def test_unit_is_active(host, unit):
    service = host.service(unit)
    assert service.is_running, journal(host, unit)
    assert service.is_enabled, f"{unit} is not enabled"


def test_sshd_listens_on_port_22(host):
    assert host.socket("tcp://0.0.0.0:22").is_listening, journal(host, "ssh.service")


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa", "ed25519"])
def test_host_key_made_on_the_node(host, key_type):
    key = host.file(f"/etc/ssh/ssh_host_{key_type}_key")
    assert key.exists
    assert key.user == "root"
    assert key.mode == 0o600


def test_root_has_no_usable_password(host):
    # "*" matches no password at all; "!" would lock the account for keys too (no PAM).
    root_hash = host.check_output("getent shadow root").split(":")[1]
    assert root_hash == "*"
