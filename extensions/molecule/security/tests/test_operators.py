"""Operators jump through the hub's jump account to exactly their spokes; admins keep their own access.

alice may reach the first spoke, bob every spoke ('all'), carol none (see converge.yml). The operator
container pins the hub's and the spokes' host keys for every hop, so no test can pass or fail on a
host key prompt.
"""

import json
import re
import shlex

import pytest
from conftest import HUB, OPERATOR, SPOKES, HubLog, lab_host, run_playbook

JUMP = "revtunnel-jump"
JUMP_KEYS = "/etc/ssh/revtunnel/jump_authorized_keys"
PINNED = "/root/.ssh/rt-sec-pinned.known_hosts"
ACCEPTED = f"Accepted publickey for {JUMP}"


@pytest.fixture(scope="module")
def operator(hub):
    """The operator container, with the hub's and the spokes' real host keys pinned under their names."""
    host = lab_host(OPERATOR)
    lines = [f"{name} {' '.join(lab_host(name).file('/etc/ssh/ssh_host_ed25519_key.pub').content_string.split()[:2])}"
             for name in [HUB, *SPOKES]]
    host.run_test(f"printf '%s\\n' {' '.join(shlex.quote(ln) for ln in lines)} > {PINNED}")
    return host


def pinned(alias):
    return ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={PINNED}", "-o", f"HostKeyAlias={alias}", "-o", "HostKeyAlgorithms=ssh-ed25519"]


def jump_ssh(who, *options, command=None):
    """ssh as operator `who` to the hub's jump account, with options and an optional command."""
    return shlex.join(["ssh", *pinned(HUB), "-i", f"/root/.ssh/{who}_ed25519", *options, f"{JUMP}@{HUB}",
                       *([command] if command else [])])


def land(operator, who, spoke, port):
    """What `ssh -J revtunnel-jump@hub admin@localhost -p PORT hostname` does, as operator `who`."""
    proxy = jump_ssh(who, "-W", "%h:%p")
    cmd = shlex.join(["ssh", *pinned(spoke), "-i", f"/root/.ssh/{who}_ed25519", "-o", f"ProxyCommand={proxy}",
                      "-p", str(port), "admin@localhost", "hostname"])
    return operator.run(f"timeout 30 {cmd} </dev/null")


def test_jump_keys_give_each_operator_exactly_the_ssh_ports_of_her_spokes(hub, registry):
    f = hub.file(JUMP_KEYS)
    assert (f.user, f.group, f.mode) == ("root", "revtunnel-jump", 0o640)
    lines = {ln.split()[-1]: ln for ln in f.content_string.splitlines() if ln and not ln.startswith("#")}
    ssh_port = {name: registry["ports"][name]["ssh"] for name in SPOKES}
    assert sorted(lines) == ["alice", "bob"]  # carol has no spoke, so no line and no access at all
    for who, spokes in {"alice": SPOKES[:1], "bob": SPOKES}.items():
        assert lines[who].startswith("restrict,port-forwarding,permitopen="), lines[who]
        opens = re.findall(r'permitopen="([^"]+)"', lines[who])
        assert opens == [f"localhost:{ssh_port[s]}" for s in spokes], lines[who]


def test_positive_control_alice_reaches_her_spoke_through_the_jump_account(operator, hub, registry):
    log = HubLog(hub)
    res = land(operator, "alice", SPOKES[0], registry["ports"][SPOKES[0]]["ssh"])
    assert res.rc == 0 and res.stdout.strip() == SPOKES[0], res.stderr
    assert ACCEPTED in log.wait(ACCEPTED)


def test_alice_is_refused_on_a_spoke_that_is_not_hers(operator, hub, registry):
    port = registry["ports"][SPOKES[1]]["ssh"]
    log = HubLog(hub)
    res = land(operator, "alice", SPOKES[1], port)
    denied = f"to connect to host localhost port {port}, but the request was denied"
    text = log.wait(ACCEPTED, denied)
    assert res.rc == 255 and SPOKES[1] not in res.stdout
    assert "administratively prohibited" in res.stderr, res.stderr
    assert ACCEPTED in text and denied in text, text


def test_bob_reaches_every_spoke(operator, registry):
    for spoke in SPOKES:
        res = land(operator, "bob", spoke, registry["ports"][spoke]["ssh"])
        assert res.rc == 0 and res.stdout.strip() == spoke, (spoke, res.stderr)


def test_carol_without_spokes_cannot_even_log_in_to_the_jump_account(operator, registry):
    res = land(operator, "carol", SPOKES[0], registry["ports"][SPOKES[0]]["ssh"])
    assert res.rc == 255
    assert f"{JUMP}@{HUB}: Permission denied (publickey)." in res.stderr, res.stderr


@pytest.mark.parametrize("options, command", [([], None), (["-tt"], "id"), ([], "id")], ids=["shell", "pty", "command"])
def test_operator_gets_no_shell_or_command_on_the_hub(operator, hub, options, command):
    log = HubLog(hub)
    res = operator.run(f"timeout 20 {jump_ssh('bob', *options, command=command)} </dev/null")
    text = log.wait(ACCEPTED, "no more sessions")
    assert res.rc == 255 and "uid=" not in res.stdout
    assert "channel 0: open failed" in res.stderr, res.stderr
    assert ACCEPTED in text and "no more sessions" in text, text


@pytest.mark.parametrize("target", ["localhost:22", "127.0.0.1:{port}", "{spoke}:22"],
                         ids=["hub-sshd", "spoke-port-by-address", "spoke-over-the-network"])
def test_operator_cannot_jump_anywhere_else(operator, hub, registry, target):
    target = target.format(port=registry["ports"][SPOKES[0]]["ssh"], spoke=SPOKES[0])
    host, port = target.rsplit(":", 1)
    log = HubLog(hub)
    res = operator.run(f"timeout 20 {jump_ssh('bob', '-W', target)} </dev/null")
    denied = f"to connect to host {host} port {port}, but the request was denied"
    text = log.wait(ACCEPTED, denied)
    assert res.rc == 255 and "SSH-" not in res.stdout
    assert "administratively prohibited" in res.stderr and "stdio forwarding failed" in res.stderr, res.stderr
    assert denied in text, text


def test_operator_cannot_open_a_port_on_the_hub(operator, hub):
    ssh = jump_ssh("bob", "-v", "-o", "ExitOnForwardFailure=yes", "-N", "-R", "localhost:10999:localhost:22")
    res = operator.run(f"timeout 20 {ssh} </dev/null")
    assert "remote port forwarding failed for listen port 10999" in res.stderr, res.stderr
    assert "Remote: Server has disabled port forwarding" in res.stderr


def test_admin_with_a_full_account_still_logs_in_to_the_hub(operator):
    cmd = shlex.join(["ssh", *pinned(HUB), "-i", "/root/.ssh/id_ed25519", f"admin@{HUB}", "id -un; hostname"])
    assert operator.check_output(f"timeout 20 {cmd} </dev/null").split() == ["admin", HUB]


def test_client_config_lands_on_the_spoke_through_the_jump_account_with_no_prompt(operator):
    operator.run_test("rm -f /root/.ssh/known_hosts")
    client = run_playbook("playbooks/client.yml", "-e", "revtunnel_client_hosts=operators",
                          "-e", f"revtunnel_client_hub_user={JUMP}", "-e", "revtunnel_client_spoke_user=admin",
                          "-e", "revtunnel_client_identity_file=/root/.ssh/alice_ed25519",
                          "-e", "revtunnel_client_ssh_dir=/root/.ssh", "-e", "revtunnel_lab_name=sec")
    assert client.returncode == 0, client.stdout + client.stderr
    operator.run_test("echo 'Include config.d/revtunnel-sec.conf' > /root/.ssh/config")
    assert "proxyjump revtunnel-sec-hub" in operator.check_output(f"ssh -G {SPOKES[0]}")
    res = operator.run(f"timeout 30 ssh -o BatchMode=yes {SPOKES[0]} hostname </dev/null")
    assert res.rc == 0 and res.stdout.strip() == SPOKES[0], res.stderr
    other = operator.run(f"timeout 30 ssh -o BatchMode=yes {SPOKES[1]} hostname </dev/null")
    assert other.rc == 255 and "administratively prohibited" in other.stderr, other.stderr
    # Nothing was trusted on first use: every key came from the generated, pinned file.
    assert not operator.file("/root/.ssh/known_hosts").exists


BOB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKDxf1Ry1fXI8XMFIUMT8k3p1zSyiRdAPvUOMELPOpp4 bob"


@pytest.mark.parametrize("operator_entry, message", [
    ({"name": "dave", "key": BOB_KEY, "spokes": ["lab-pc-99"]},
     "revtunnel_operators 'dave': spoke(s) lab-pc-99 are not in the inventory's spokes"),
    ({"name": "erin", "key": 'command="/bin/sh" ' + BOB_KEY, "spokes": "all"},
     "revtunnel_operators 'erin' key: give the OpenSSH public key line"),
    ({"name": "frank", "key": "ssh-ed25519 AAAAnotakey", "spokes": "all"},
     "revtunnel_operators 'frank' key: give the OpenSSH public key line"),
], ids=["unknown-spoke", "key-with-options", "broken-key"])
def test_preflight_stops_a_bad_operator_entry_before_anything_changes(hub, operator_entry, message):
    before = hub.file(JUMP_KEYS).sha256sum
    proc = run_playbook("site.yml", "-e", json.dumps({"revtunnel_operators": [operator_entry]}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in " ".join(out.split()), out
    assert hub.file(JUMP_KEYS).sha256sum == before
