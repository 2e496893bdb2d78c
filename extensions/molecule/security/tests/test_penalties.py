"""Operators are never locked out of a Debian 13 spoke by sshd's PerSourcePenalties (OpenSSH >= 9.8).

Every connection through a tunnel reaches the spoke's sshd from loopback. Without the spoke role's exemption, about
20 connections that never authenticate (a status loop, a scan from the hub) make sshd refuse 127.0.0.1, which is
every operator too. The exemption covers the tunnel's loopback sources only: a remote address is still penalised,
and a spoke with an older sshd (Debian 12, OpenSSH 9.2) gets no drop-in.
"""

from conftest import OPERATOR, SPOKES, lab_host

# The operator fixture (pinned host keys for every hop) and its landing helper, shared with test_operators.
from test_operators import land, operator  # noqa: F401  # pylint: disable=unused-import

DROPIN = "/etc/ssh/sshd_config.d/10-revtunnel-spoke.conf"

# Runs on the hub or the operator: N connections to HOST:PORT that read the banner and close without a word.
UNAUTHENTICATED = """
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
banners = 0
for _n in range(count):
    try:
        with socket.create_connection((host, port), 3) as s:
            s.settimeout(3)
            banners += s.recv(64).startswith(b"SSH-")
    except OSError:
        pass
print(banners)
"""


def spoke_with_penalties():
    """The spoke whose sshd has PerSourcePenalties (the Debian 13 one)."""
    for name in SPOKES:
        if "persourcepenalties " in lab_host(name).check_output("sshd -T"):
            return name
    raise AssertionError("no spoke of this lab runs OpenSSH >= 9.8: the test proves nothing")


def test_the_exemption_is_only_on_sshd_that_has_penalties_and_names_only_loopback():
    name = spoke_with_penalties()
    spoke = lab_host(name)
    assert "persourcepenaltyexemptlist 127.0.0.1/32,::1/128" in spoke.check_output("sshd -T"), spoke.check_output(
        "sshd -T | grep -i penalt")
    assert spoke.file(DROPIN).user == "root" and spoke.file(DROPIN).mode == 0o644
    for other in SPOKES:
        if other != name:
            assert not lab_host(other).file(DROPIN).exists, f"{other}: sshd without penalties got the drop-in"


def test_fifty_unauthenticated_connections_through_the_tunnel_then_the_operator_gets_in(hub, registry, operator):  # noqa: F811
    name = spoke_with_penalties()
    port = registry["ports"][name]["ssh"]
    hub.check_output(f"cat > /tmp/rt-sec-noauth.py <<'PY'\n{UNAUTHENTICATED}PY")
    banners = int(hub.check_output(f"python3 /tmp/rt-sec-noauth.py 127.0.0.1 {port} 50"))
    assert banners == 50, f"only {banners} of 50 connections through the tunnel were greeted"
    landed = land(operator, "bob", name, port)
    assert landed.rc == 0 and landed.stdout.strip() == name, landed.stderr
    log = lab_host(name).check_output("journalctl -u ssh --since -2min --no-pager -o cat | grep 'penalty:' || true")
    assert "[127.0.0.1]" not in log, log


def test_a_remote_source_is_still_penalised():
    name = spoke_with_penalties()
    spoke, remote = lab_host(name), lab_host(OPERATOR)
    address = spoke.check_output("hostname -i").split()[0]
    remote.check_output(f"cat > /tmp/rt-sec-noauth.py <<'PY'\n{UNAUTHENTICATED}PY")
    banners = int(remote.check_output(f"python3 /tmp/rt-sec-noauth.py {address} 22 50"))
    assert banners < 50, "a remote address that never authenticates must still be penalised"
    log = spoke.check_output("journalctl -u ssh --since -2min --no-pager -o cat | grep penalty || true")
    assert "penalty: connections without attempting authentication" in log, log
