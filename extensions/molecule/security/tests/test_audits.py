"""Audits with figures: ssh-audit of the hub's sshd, systemd-analyze security of the spoke unit, sshd -T.

The figures are printed (pytest -s, or the molecule verify log with -v) and copied into docs/security.md.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HUB, SPOKES, UNIT, lab_host

SSH_AUDIT = Path(sys.executable).parent / "ssh-audit"
# What the hub keeps on purpose: classic key exchanges beside sntrup761, for clients older than OpenSSH 9.
ACCEPTED_WARNINGS = {"does not provide protection against post-quantum attacks"}


def container_ip(name):
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return subprocess.run(["docker", "inspect", "-f", fmt, name], capture_output=True, text=True,
                          check=True).stdout.strip()


def ssh_audit(name):
    """ssh-audit's findings for a lab host's sshd, from this machine over the lab's Docker bridge."""
    if not SSH_AUDIT.exists():
        pytest.fail(f"{SSH_AUDIT} is missing: pip install -r requirements-dev.txt")
    proc = subprocess.run([SSH_AUDIT, "-j", "--skip-rate-test", container_ip(name)], capture_output=True,
                          text=True, timeout=120, check=False)
    report = json.loads(proc.stdout)
    findings = {"fail": [], "warn": []}
    for section in ("kex", "key", "enc", "mac"):
        for alg in report.get(section, []):
            for level in findings:
                for note in alg.get("notes", {}).get(level, []):
                    findings[level].append((section, alg["algorithm"], note))
    return report, findings


def test_stock_debian_sshd_fails_the_audit_so_the_audit_can_fail():
    # Positive control for the tool: the spokes' sshd is Debian's, untouched by the collection.
    for spoke in SPOKES:
        _report, findings = ssh_audit(spoke)
        print(f"ssh-audit stock {spoke}: {len(findings['fail'])} fail, {len(findings['warn'])} warn")
        assert findings["fail"], spoke


def test_hub_sshd_passes_ssh_audit_with_no_failure():
    report, findings = ssh_audit(HUB)
    print(f"ssh-audit hub {HUB} ({report['banner']['software']}): {len(findings['fail'])} fail, "
          f"{len(findings['warn'])} warn: {sorted({alg for _section, alg, _note in findings['warn']})}")
    assert findings["fail"] == []
    assert {note for _section, _alg, note in findings["warn"]} <= ACCEPTED_WARNINGS, findings["warn"]
    offered = {alg["algorithm"] for alg in report["kex"]}
    assert any(alg.startswith("sntrup761x25519-sha512") for alg in offered), offered


@pytest.mark.parametrize("spoke", SPOKES)
def test_spoke_unit_exposure_is_two_or_lower(spoke):
    out = lab_host(spoke).run(f"systemd-analyze security --no-pager {UNIT}").stdout
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    version = lab_host(spoke).check_output("systemctl --version").splitlines()[0]
    print(f"systemd-analyze security {spoke} ({version}): {score}")
    assert score <= 2.0, out


def effective(hub, user):
    out = hub.check_output(f"sshd -T -C user={user},host=client.example,addr=192.0.2.1,laddr=127.0.0.1,lport=22")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


COMMON = {
    "authenticationmethods": "publickey", "passwordauthentication": "no", "kbdinteractiveauthentication": "no",
    "authorizedprincipalsfile": "none", "gatewayports": "no", "allowstreamlocalforwarding": "no",
    "allowagentforwarding": "no", "x11forwarding": "no", "permittunnel": "no", "permittty": "no",
    "permituserrc": "no", "maxsessions": "0", "forcecommand": "/usr/sbin/nologin",
}


@pytest.mark.parametrize("user, expected", [
    ("tunnel", {**COMMON, "authorizedkeysfile": "/etc/ssh/revtunnel/authorized_keys",
                "allowtcpforwarding": "remote", "permitopen": "none", "permitlisten": "localhost:*",
                "clientaliveinterval": "75", "clientalivecountmax": "2"}),
    ("revtunnel-jump", {**COMMON, "authorizedkeysfile": "/etc/ssh/revtunnel/jump_authorized_keys",
                        "allowtcpforwarding": "local", "permitopen": "localhost:*", "permitlisten": "none"}),
])
def test_effective_sshd_settings_of_the_collections_accounts(hub, user, expected):
    cfg = effective(hub, user)
    assert {k: cfg.get(k) for k in expected} == expected


def test_admins_keep_the_global_settings(hub):
    cfg = effective(hub, "admin")
    assert cfg["allowtcpforwarding"] == "yes" and cfg["maxsessions"] == "10"
    assert cfg.get("forcecommand", "none") == "none" and cfg["permittty"] == "yes"
