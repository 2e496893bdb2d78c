"""The tunnel account on the hub: its keys file, its password, and a hub that is not the real one."""

import shlex

import pytest
from conftest import HUB, SPOKES, UNIT, HubLog, hub_reads_banner, journal, lab_host, wait_for

KEYS = "/etc/ssh/revtunnel/authorized_keys"
PASSWORD = "Lab-only-pass-4711"  # noqa: S105 - a throwaway password set and removed by the test itself


def as_tunnel(hub, command):
    return hub.run(f"runuser -u tunnel -- /bin/sh -c {shlex.quote(command)}")


def test_tunnel_account_cannot_change_its_authorized_keys(hub):
    before = hub.file(KEYS).sha256sum
    attempts = {
        "append": as_tunnel(hub, f"echo 'ssh-ed25519 AAAA attacker' >> {KEYS}"),
        "replace": as_tunnel(hub, f"cp /dev/null /tmp/k && mv /tmp/k {KEYS}"),
        "new file": as_tunnel(hub, "touch /etc/ssh/revtunnel/authorized_keys2"),
        "chmod": as_tunnel(hub, f"chmod 0666 {KEYS}"),
    }
    for what, res in attempts.items():
        assert res.rc != 0, what
        assert "Permission denied" in res.stderr or "Operation not permitted" in res.stderr, (what, res.stderr)
    assert hub.file(KEYS).sha256sum == before
    for path in ("/etc/ssh", "/etc/ssh/revtunnel"):
        f = hub.file(path)
        assert (f.user, f.group) == ("root", "root") and not f.mode & 0o022, path
    f = hub.file(KEYS)
    assert (f.user, f.group, f.mode) == ("root", "tunnel", 0o640)
    # StrictModes makes sshd itself ignore the file should anyone make it writable by others.
    assert "strictmodes yes" in hub.check_output("sshd -T")


def test_no_other_hub_account_reads_which_spoke_holds_which_port(hub):
    # sshd opens the file as the tunnel account, so its group reads it; any other account of the hub does not.
    hub.check_output("id rt-sec-nosy >/dev/null 2>&1 || useradd --no-create-home rt-sec-nosy")
    for path in (KEYS, "/etc/ssh/revtunnel/jump_authorized_keys"):
        res = hub.run(f"runuser -u rt-sec-nosy -- cat {path}")
        assert res.rc != 0 and "Permission denied" in res.stderr, (path, res)


def test_tunnel_account_has_no_way_to_read_its_authorized_keys_over_ssh(hub):
    # The tunnel account's group reads the file, since sshd opens it with the tunnel account's uid; it holds
    # public keys and port numbers only. What the key holder lacks is any process on the hub that could
    # read it: no shell, no command, no sftp (test_tunnel_key_attacks checks those refusals).
    assert as_tunnel(hub, f"cat {KEYS}").rc == 0
    cfg = hub.check_output("sshd -T -C user=tunnel,host=x,addr=192.0.2.1,laddr=127.0.0.1,lport=22")
    assert "maxsessions 0" in cfg and "forcecommand /usr/sbin/nologin" in cfg
    assert "restrict," in hub.file(KEYS).content_string


def askpass_login(spoke, user):
    """Log in with a password only, typed by SSH_ASKPASS, from a spoke to the hub."""
    script = f"printf '#!/bin/sh\\necho {PASSWORD}\\n' >/tmp/rt-sec-askpass && chmod 700 /tmp/rt-sec-askpass"
    ssh = shlex.join(["ssh", "-F", "/dev/null", "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no",
                      "-o", "PreferredAuthentications=password,keyboard-interactive",
                      "-o", "NumberOfPasswordPrompts=1", "-o", "StrictHostKeyChecking=yes",
                      "-o", f"UserKnownHostsFile=/etc/revtunnel/{HUB}.known_hosts",
                      "-o", f"HostKeyAlias=revtunnel-hub-{HUB}", "-o", "HostKeyAlgorithms=ssh-ed25519",
                      "-l", user, HUB, "id -un"])
    return spoke.run(f"{script} && SSH_ASKPASS=/tmp/rt-sec-askpass SSH_ASKPASS_REQUIRE=force DISPLAY=:0"
                     f" setsid -w timeout 20 {ssh} </dev/null")


@pytest.fixture()
def password_everywhere(hub):
    """The tunnel account and a throwaway account get the same password for the length of a test."""
    hub.run_test("useradd -m -s /bin/sh rt-sec-pw")
    hub.run_test(f"echo 'tunnel:{PASSWORD}' | chpasswd && echo 'rt-sec-pw:{PASSWORD}' | chpasswd")
    yield
    hub.run("userdel -r rt-sec-pw")
    hub.run_test("usermod -p '*' tunnel")
    assert hub.user("tunnel").password == "*"  # noqa: S105 - the no-password marker


def test_password_login_for_the_tunnel_account_is_refused(hub, password_everywhere):
    spoke = lab_host(SPOKES[0])
    # Positive control: the same password, sent the same way, logs another account in.
    control = askpass_login(spoke, "rt-sec-pw")
    assert control.rc == 0 and control.stdout.strip() == "rt-sec-pw", (control.stdout, control.stderr)
    res = askpass_login(spoke, "tunnel")
    assert res.rc == 255, (res.stdout, res.stderr)
    # The hub offers the tunnel account public keys only, so the password is never even asked for.
    assert "tunnel@" in res.stderr and "Permission denied (publickey)." in res.stderr, res.stderr


@pytest.fixture()
def hub_with_another_host_key(hub):
    """A man in the middle, as far as the spokes can tell: the hub answers with a new ed25519 host key."""
    key = "/etc/ssh/ssh_host_ed25519_key"
    hub.run_test(f"cp -p {key} /root/rt-sec-hostkey && cp -p {key}.pub /root/rt-sec-hostkey.pub")
    try:
        hub.run_test(f"rm -f {key} {key}.pub && ssh-keygen -q -t ed25519 -N '' -f {key} && systemctl restart ssh")
        yield
    finally:
        hub.run_test(f"cp -p /root/rt-sec-hostkey {key} && cp -p /root/rt-sec-hostkey.pub {key}.pub"
                     " && rm -f /root/rt-sec-hostkey* && systemctl restart ssh")


def test_spoke_unit_refuses_a_hub_with_another_host_key(hub, registry, hub_with_another_host_key):
    spoke = lab_host(SPOKES[0])
    port = registry["ports"][SPOKES[0]]["ssh"]
    cursor = spoke.check_output(f"journalctl -u {UNIT} -n 0 --show-cursor --no-pager").rsplit("-- cursor: ", 1)[1]
    log = HubLog(hub)
    spoke.run_test(f"systemctl restart {UNIT}")

    def unit_journal():
        out = spoke.run(f"journalctl -u {UNIT} --after-cursor={shlex.quote(cursor.strip())} --no-pager -o cat").stdout
        return out if "Host key verification failed" in out else ""

    text = wait_for(unit_journal, timeout=30)
    assert "Host key verification failed." in text, journal(spoke, UNIT)
    # ssh's banner line, or its summary when the unit keeps the last lines of ssh's log without the '@' box.
    assert ("REMOTE HOST IDENTIFICATION HAS CHANGED" in text
            or f"Host key for revtunnel-hub-{HUB} has changed and you have requested strict checking" in text), text
    # The spoke gave up before authenticating: its key was never offered to the impostor.
    assert "Accepted publickey" not in log.text()
    assert f":{port} " not in hub.check_output("ss -Htln") + " "


def test_spoke_tunnel_comes_back_with_the_real_host_key(hub, registry):
    # Runs after the impostor test put the real key back: the unit keeps retrying and reconnects by itself.
    for name in SPOKES:
        assert hub_reads_banner(hub, registry["ports"][name]["ssh"], timeout=60), journal(lab_host(name), UNIT)
