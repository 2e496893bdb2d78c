"""A spoke's tunnel key has leaked: with it, the hub grants its own loopback port and nothing else.

Every attack runs as root on a spoke with the spoke's key, its pinned hub key and ExitOnForwardFailure,
exactly as the positive control (first test) does, and each one checks in the hub's sshd journal that the
key was *accepted* in that very attempt: the refusal comes from the account's rules, not from a bad key,
a bad host key or a busy port (every tunnel is stopped while this module runs).
"""

import pytest
from conftest import SPOKES, Attacker, HubLog, hub_reads_banner, wait_for

ACCEPTED = "Accepted publickey for tunnel"
# MaxSessions 0: sshd refuses the session channel that a shell, a command, a PTY, agent and X11 forwarding
# and a subsystem all need; the client then reports the failed channel open.
NO_SESSION_HUB = "no more sessions"
NO_SESSION_CLIENT = "channel 0: open failed"


@pytest.fixture(scope="module", params=SPOKES)
def attacker(request, tunnels_stopped, registry):
    return Attacker(request.param, registry["ports"])


def test_positive_control_the_spokes_own_reverse_port_opens_on_hub_loopback(attacker, hub):
    log = HubLog(hub)
    with attacker.background("-R", f"localhost:{attacker.port}:localhost:22", tag="own") as stderr:
        assert hub_reads_banner(hub, attacker.port), stderr() + log.text()
        bound = hub.check_output("ss -Htln")
    assert ACCEPTED in log.wait(ACCEPTED)
    addrs = {ln.split()[3].rsplit(":", 1)[0] for ln in bound.splitlines()
             if ln.split()[3].endswith(f":{attacker.port}")}
    assert addrs and addrs <= {"127.0.0.1", "[::1]"}, bound


def assert_no_session(res, log):
    text = log.wait(ACCEPTED, NO_SESSION_HUB)
    assert res.rc == 255, (res.rc, res.stdout, res.stderr)
    assert NO_SESSION_CLIENT in res.stderr, res.stderr
    assert ACCEPTED in text and NO_SESSION_HUB in text, text


def test_a_login_shell_is_refused(attacker, hub):
    log = HubLog(hub)
    res = attacker.run()
    assert_no_session(res, log)


def test_a_command_is_refused(attacker, hub):
    log = HubLog(hub)
    res = attacker.run(command="id; cat /etc/ssh/revtunnel/authorized_keys")
    assert_no_session(res, log)
    assert "uid=" not in res.stdout and "ssh-ed25519" not in res.stdout


def test_a_pty_is_refused(attacker, hub):
    log = HubLog(hub)
    res = attacker.run("-tt", command="tty")
    assert_no_session(res, log)
    assert "/dev/pts" not in res.stdout


def test_the_sftp_subsystem_is_refused(attacker, hub):
    log = HubLog(hub)
    res = attacker.run("-s", command="sftp")
    assert_no_session(res, log)


def test_agent_forwarding_is_refused(attacker, hub):
    # A running agent holding a key: were forwarding granted, the hub would get an agent socket.
    log = HubLog(hub)
    res = attacker.host.run(
        "rm -f /tmp/rt-sec-agent-key*; eval $(ssh-agent -s) >/dev/null"
        " && ssh-keygen -q -t ed25519 -N '' -f /tmp/rt-sec-agent-key && ssh-add -q /tmp/rt-sec-agent-key"
        f" && timeout 20 {attacker.ssh('-A', command='echo sock=$SSH_AUTH_SOCK')} </dev/null;"
        " rc=$?; ssh-agent -k >/dev/null; rm -f /tmp/rt-sec-agent-key*; exit $rc")
    assert_no_session(res, log)
    assert "sock=" not in res.stdout
    assert hub.run("find /tmp -name 'agent.*' -user tunnel").stdout == ""


def test_x11_forwarding_is_refused(attacker, hub):
    log = HubLog(hub)
    res = attacker.run("-X", command="echo display=$DISPLAY", env="DISPLAY=:0")
    assert_no_session(res, log)
    assert "display=" not in res.stdout


def test_binding_another_spokes_port_is_refused(attacker, hub):
    log = HubLog(hub)
    res = attacker.run("-v", "-N", "-R", f"localhost:{attacker.other}:localhost:22")
    denied = f"remote forward to host localhost port {attacker.other}, but the request was denied"
    text = log.wait(ACCEPTED, denied)
    assert f"remote port forwarding failed for listen port {attacker.other}" in res.stderr, res.stderr
    assert "Remote: port forwarding refused" in res.stderr
    assert ACCEPTED in text and denied in text, text


# Addresses the attacker asks the hub to listen on (ssh sends "*" as an empty address); nothing binds here.
@pytest.mark.parametrize("address, logged", [("0.0.0.0", "0.0.0.0"), ("[::]", "::"), ("*", "")],  # noqa: S104
                         ids=["ipv4-any", "ipv6-any", "wildcard"])
def test_binding_its_own_port_on_every_address_is_refused(attacker, hub, address, logged):
    log = HubLog(hub)
    res = attacker.run("-v", "-N", "-R", f"{address}:{attacker.port}:localhost:22")
    denied = f"remote forward to host {logged} port {attacker.port}, but the request was denied"
    text = log.wait(ACCEPTED, denied)
    assert f"remote port forwarding failed for listen port {attacker.port}" in res.stderr, res.stderr
    assert ACCEPTED in text and denied in text, text
    assert f":{attacker.port} " not in hub.check_output("ss -Htln") + " "


def wait_stderr(stderr):
    """The background client's stderr once it reports the refused channel."""
    return wait_for(lambda: stderr() if "administratively prohibited" in stderr() else "", timeout=5) or stderr()


def local_targets(attacker):
    return {"hub-sshd": ("127.0.0.1", 22), "other-spoke": ("localhost", attacker.other)}


@pytest.mark.parametrize("target", ["hub-sshd", "other-spoke"])
def test_a_local_forward_is_refused(attacker, hub, target):
    host, port = local_targets(attacker)[target]
    log = HubLog(hub)
    with attacker.background("-L", f"127.0.0.1:15022:{host}:{port}", tag="local") as stderr:
        assert attacker.listening(15022), stderr()
        got = attacker.host.run("python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", 15022), 5);"
                                " s.settimeout(5); print(repr(s.recv(64)))'").stdout
        text = log.wait(ACCEPTED, "refused local port forward")
        assert "administratively prohibited" in wait_stderr(stderr), stderr()
    assert "SSH-" not in got, got
    assert "refused local port forward: originator 127.0.0.1 port" in text, text
    assert f"target {host} port {port}" in text, text


@pytest.mark.parametrize("target", ["hub-sshd", "other-spoke"])
def test_a_stdio_forward_is_refused(attacker, hub, target):
    host, port = local_targets(attacker)[target]
    log = HubLog(hub)
    res = attacker.run("-W", f"{host}:{port}")
    text = log.wait(ACCEPTED, "refused local port forward")
    assert res.rc == 255 and "SSH-" not in res.stdout
    assert "administratively prohibited" in res.stderr and "stdio forwarding failed" in res.stderr, res.stderr
    assert f"target {host} port {port}" in text, text


def test_a_dynamic_socks_forward_is_refused(attacker, hub):
    log = HubLog(hub)
    socks = ("python3 -c 'import socket, struct; s = socket.create_connection((\"127.0.0.1\", 15080), 5);"
             " s.settimeout(5); s.sendall(b\"\\x05\\x01\\x00\"); s.recv(2);"
             " s.sendall(b\"\\x05\\x01\\x00\\x01\" + socket.inet_aton(\"127.0.0.1\") + struct.pack(\">H\", 22));"
             " print(repr(s.recv(64)))'")
    with attacker.background("-D", "127.0.0.1:15080", tag="socks") as stderr:
        assert attacker.listening(15080), stderr()
        got = attacker.host.run(socks).stdout
        text = log.wait(ACCEPTED, "refused local port forward")
        assert "administratively prohibited" in wait_stderr(stderr), stderr()
    assert got.strip() == "b''", got
    assert "target 127.0.0.1 port 22" in text, text


def test_a_unix_socket_remote_forward_is_refused(attacker, hub):
    path = f"/tmp/rt-sec-{attacker.name}.sock"
    log = HubLog(hub)
    res = attacker.run("-v", "-N", "-R", f"{path}:localhost:22")
    assert ACCEPTED in log.wait(ACCEPTED)
    assert f"remote port forwarding failed for listen path {path}" in res.stderr, res.stderr
    assert "Remote: Server has disabled streamlocal forwarding" in res.stderr
    assert not hub.file(path).exists


def test_a_unix_socket_local_forward_is_refused(attacker, hub):
    log = HubLog(hub)
    with attacker.background("-L", "127.0.0.1:15023:/run/systemd/private", tag="unix") as stderr:
        assert attacker.listening(15023), stderr()
        attacker.host.run("python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", 15023), 5);"
                          " s.settimeout(5); s.recv(64)'")
        text = log.wait(ACCEPTED, "refused streamlocal port forward")
    assert "target /run/systemd/private" in text, text
