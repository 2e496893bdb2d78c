"""Who on the hub reaches the spokes' ports: everyone by default, only root, the jump account and the listed
admins with revtunnel_hub_restrict_local_access. The run that lifts the limit leaves the lab as it found it."""

import yaml
from conftest import HUB, SPOKES, hub_reads_banner, lab_host, run_playbook

CONVERGE = "extensions/molecule/security/converge.yml"
LOCAL = "rt-sec-local"
PROBE = ("python3 -c 'import socket,sys; s=socket.create_connection((\"127.0.0.1\", int(sys.argv[1])), 3); "
         "s.settimeout(3); sys.stdout.write(s.recv(64).decode(errors=\"replace\"))' ")


def banner_as(hub, user, port):
    """What a plain TCP connection to the port reads, run as that hub account ("" when it is refused)."""
    res = hub.run(f"runuser -u {user} -- {PROBE}{port}")
    return res.stdout if res.rc == 0 else ""


def test_only_root_the_jump_account_and_listed_admins_reach_the_spoke_ports_when_asked(hub, registry, tmp_path):
    port = registry["ports"][SPOKES[0]]["ssh"]
    hub.run(f"id {LOCAL} || useradd -M -s /bin/sh {LOCAL}")
    # By default, as on any multi-user host, a local account reads the spoke's banner.
    assert banner_as(hub, LOCAL, port).startswith("SSH-"), "positive control: the port must answer locally"

    limit = tmp_path / "limit.yml"
    limit.write_text(yaml.safe_dump({"revtunnel_hub_restrict_local_access": True,
                                     "revtunnel_hub_local_access_users": ["admin"]}))
    try:
        proc = run_playbook(CONVERGE, "-e", f"@{limit}")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        assert hub.service("revtunnel-local-access").is_enabled
        assert not banner_as(hub, LOCAL, port).startswith("SSH-")
        assert banner_as(hub, "admin", port).startswith("SSH-")
        assert banner_as(hub, "revtunnel-jump", port).startswith("SSH-")
        assert hub_reads_banner(hub, port, timeout=10), "root (status, metrics, reaper) must still reach it"
        # The rules come back at boot: the unit is what applies them.
        hub.run_test("systemctl restart revtunnel-local-access")
        assert not banner_as(hub, LOCAL, port).startswith("SSH-")
    finally:
        lifted = run_playbook(CONVERGE)
    assert lifted.returncode == 0, lifted.stdout[-3000:] + lifted.stderr
    assert not hub.file("/etc/systemd/system/revtunnel-local-access.service").exists
    assert banner_as(hub, LOCAL, port).startswith("SSH-")
    assert lab_host(HUB).run("iptables -S OUTPUT").stdout.count("REVTUNNEL_LOCAL") == 0
