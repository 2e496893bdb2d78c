"""What a spoke sends cannot reach the admin's terminal raw, and one slow spoke cannot stall the status.

With the first spoke's tunnel stopped, an impostor binds its port on the hub (what a dead or hostile spoke
could serve) and revtunnel-status runs on the hub as an admin would run it. The impostor runs as the tunnel account,
the one account the hub's bind filter lets bind a spoke's port (what the spoke's own session would send).
"""

import json
import re
import time

from conftest import SPOKES, UNIT, hub_reads_banner, lab_host

SERVER = r"""
import socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(8)
end = time.time() + 60
while time.time() < end:
    c, _peer = s.accept()
    if mode == "escape":
        c.sendall(b"SSH-2.0-\x1b]0;pwned\x07\x1b[2J\x1b[31mred\r\n")
        time.sleep(0.5)
    else:
        for _byte in range(30):
            c.sendall(b"S")
            time.sleep(2.5)
    c.close()
"""
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def impostor(hub, port, mode):
    hub.check_output(f"cat > /usr/local/bin/rt-sec-impostor.py <<'PY'\n{SERVER}PY")
    hub.run_test("systemd-run --unit rt-sec-impostor --collect -p User=tunnel "
                 f"python3 /usr/local/bin/rt-sec-impostor.py {port} {mode}")
    deadline = time.monotonic() + 10
    while f":{port} " not in hub.check_output("ss -Htln") + " " and time.monotonic() < deadline:
        time.sleep(0.2)


def with_impostor(hub, registry, mode, command):
    spoke = lab_host(SPOKES[0])
    port = registry["ports"][SPOKES[0]]["ssh"]
    spoke.run_test(f"systemctl stop {UNIT}")
    deadline = time.monotonic() + 15
    while f":{port} " in hub.check_output("ss -Htln") + " " and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        impostor(hub, port, mode)
        start = time.monotonic()
        out = hub.run(command)
        return out, time.monotonic() - start
    finally:
        hub.run("systemctl stop rt-sec-impostor")
        spoke.run_test(f"systemctl start {UNIT}")
        assert hub_reads_banner(hub, port, timeout=60)


def test_an_escape_laden_banner_prints_no_control_bytes(hub, registry):
    for flag, shown in (("", "pwned"), ("--json", "pwned"), ("--prometheus", "revtunnel_tunnel_up{")):
        out, _took = with_impostor(hub, registry, "escape", f"revtunnel-status {flag} --timeout 3")
        # the table and the JSON show the banner read (made printable); the metrics carry no banner text
        assert shown in out.stdout, out.stdout
        assert not CONTROL.search(out.stdout), repr(out.stdout)


def test_a_slow_port_does_not_delay_the_others(hub, registry):
    out, took = with_impostor(hub, registry, "trickle", "revtunnel-status --json --timeout 3")
    assert took < 10, f"revtunnel-status took {took:.1f} s with one trickling port and --timeout 3"
    rows = {(row["spoke"], row["forward"]): row for row in json.loads(out.stdout)}
    assert not rows[(SPOKES[0], "ssh")]["up"]
    assert rows[(SPOKES[1], "ssh")]["up"], out.stdout
