"""Each spoke after converge: service account, key made on the spoke, pinned hub key, sandboxed unit."""

import re

from conftest import journal

testinfra_hosts = ["ansible://spokes"]
UNIT = "revtunnel@rt-hub.service"


def test_service_account_is_a_non_root_system_user(host):
    user = host.user("revtunnel")
    assert user.exists and 0 < user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    home = host.file("/var/lib/revtunnel")
    assert (home.user, home.mode) == ("revtunnel", 0o700)


def test_private_key_stays_on_the_spoke_readable_by_its_account_only(host, hub):
    key = host.file("/var/lib/revtunnel/id_ed25519")
    assert (key.user, key.group, key.mode) == ("revtunnel", "revtunnel", 0o600)
    pub = host.file("/var/lib/revtunnel/id_ed25519.pub").content_string.split()[1]
    assert pub in hub.file("/etc/ssh/revtunnel/authorized_keys").content_string
    # The middle lines hold the secret part; the first one is a header shared by every ed25519 key.
    private_blob = key.content_string.splitlines()[3]
    assert hub.run(f"grep -rqF '{private_blob}' /etc /var/lib /root /home").rc == 1


def test_hub_host_key_is_pinned_from_the_hubs_own_key_file(host, hub):
    hub_key = " ".join(hub.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[:2])
    pinned = [ln for ln in host.file("/etc/revtunnel/rt-hub.known_hosts").content_string.splitlines()
              if ln and not ln.startswith("#")]
    assert pinned == [f"revtunnel-hub-rt-hub {hub_key}"]
    cfg = host.check_output("ssh -G -F /etc/revtunnel/rt-hub.ssh_config revtunnel-hub")
    assert "stricthostkeychecking true" in cfg
    assert "exitonforwardfailure yes" in cfg
    assert "batchmode yes" in cfg


def test_unit_is_enabled_active_and_runs_as_the_service_account(host):
    svc = host.service(UNIT)
    assert svc.is_enabled, journal(host, UNIT)
    assert svc.is_running, journal(host, UNIT)
    pid = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    assert host.check_output(f"ps -o user= -p {pid}") == "revtunnel"
    props = host.check_output(f"systemctl show -p Restart -p StartLimitIntervalUSec -p NoNewPrivileges {UNIT}")
    assert "Restart=always" in props and "StartLimitIntervalUSec=0" in props and "NoNewPrivileges=yes" in props


def test_unit_sandbox_exposure_is_two_or_lower(host):
    out = host.run(f"systemd-analyze security --no-pager {UNIT}").stdout
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert score <= 2.0, out
