"""The hub after converge: tunnel account, sshd restrictions, keys, ports bound on loopback only."""

import re

from conftest import group, lab_host

testinfra_hosts = ["ansible://hub"]


def effective_sshd(host, user):
    out = host.check_output(f"sshd -T -C user={user},host=client.example,addr=192.0.2.1,laddr=127.0.0.1,lport=22")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_tunnel_account_has_no_shell_and_no_usable_password(host):
    tunnel = host.user("tunnel")
    assert tunnel.exists
    assert tunnel.shell == "/usr/sbin/nologin"
    assert tunnel.password == "*"  # noqa: S105 - not a secret: the no-password marker
    assert tunnel.uid < 1000


def test_effective_sshd_settings_for_the_tunnel_account(host):
    cfg = effective_sshd(host, "tunnel")
    expected = {
        "allowtcpforwarding": "remote",
        "permitopen": "none",
        "permitlisten": "localhost:*",
        "gatewayports": "no",
        "allowstreamlocalforwarding": "no",
        "allowagentforwarding": "no",
        "x11forwarding": "no",
        "permittunnel": "no",
        "permittty": "no",
        "permituserrc": "no",
        "maxsessions": "0",
        "forcecommand": "/usr/sbin/nologin",
        "authenticationmethods": "publickey",
        "passwordauthentication": "no",
        "authorizedkeysfile": "/etc/ssh/revtunnel/authorized_keys",
        "clientaliveinterval": "75",
        "clientalivecountmax": "2",
    }
    assert {k: cfg.get(k) for k in expected} == expected


def test_other_accounts_keep_the_global_sshd_settings(host):
    cfg = effective_sshd(host, "admin")
    assert cfg["allowtcpforwarding"] == "yes"
    assert cfg["maxsessions"] == "10"
    assert "forcecommand" not in cfg or cfg["forcecommand"] == "none"


def test_dropin_and_keys_are_root_owned(host):
    # The keys are read by sshd as the account they are for, and by no other account of the hub.
    for path, owner_group, mode in [("/etc/ssh/sshd_config.d/10-revtunnel.conf", "root", 0o644),
                                    ("/etc/ssh/revtunnel", "root", 0o755),
                                    ("/etc/ssh/revtunnel/authorized_keys", "tunnel", 0o640),
                                    ("/etc/ssh/revtunnel/jump_authorized_keys", "revtunnel-jump", 0o640)]:
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", owner_group, mode), path


def test_authorized_keys_hold_one_restricted_line_per_spoke(host, registry):
    lines = [ln for ln in host.file("/etc/ssh/revtunnel/authorized_keys").content_string.splitlines()
             if ln and not ln.startswith("#")]
    assert sorted(ln.split()[-1] for ln in lines) == group("spokes")
    for line in lines:
        spoke = line.split()[-1]
        listens = sorted(int(p) for p in re.findall(r'permitlisten="localhost:(\d+)"', line))
        assert listens == sorted(registry["ports"][spoke].values())
        assert line.startswith("restrict,port-forwarding,")
        assert 'permitopen="127.0.0.1:1"' in line


def test_registry_is_private_and_covers_every_spoke(host, registry):
    f = host.file("/var/lib/revtunnel/ports.json")
    assert (f.user, f.mode) == ("root", 0o640)
    assert registry["version"] == 2
    assert sorted(registry["ports"]) == group("spokes")
    # one trusted key per spoke, the one its tunnel uses (derived on the spoke from its private key)
    for spoke, entry in registry["spokes"].items():
        held = lab_host(spoke).check_output("ssh-keygen -y -f /var/lib/revtunnel/id_ed25519")
        assert entry["keys"] == [" ".join(held.split()[:2])], spoke
    ports = [p for fwd in registry["ports"].values() for p in fwd.values()]
    assert len(ports) == len(set(ports))


def test_tunnel_ports_listen_on_loopback_only(host, registry):
    listening = host.check_output("ss -Htln").splitlines()
    for spoke, forwards in registry["ports"].items():
        for name, port in forwards.items():
            addrs = [ln.split()[3].rsplit(":", 1)[0] for ln in listening if ln.split()[3].endswith(f":{port}")]
            assert addrs, f"{spoke}/{name}: port {port} is not bound on the hub"
            assert set(addrs) <= {"127.0.0.1", "[::1]"}, f"{spoke}/{name}: {addrs}"


def test_each_spoke_answers_with_its_ssh_banner_through_the_tunnel(host, registry):
    for spoke, forwards in registry["ports"].items():
        banner = host.check_output(
            "python3 -c 'import socket,sys; s=socket.create_connection((\"127.0.0.1\", %d), 5);"
            " sys.stdout.write(s.recv(64).decode())'" % forwards["ssh"])
        assert banner.startswith("SSH-2.0-OpenSSH"), (spoke, banner)
