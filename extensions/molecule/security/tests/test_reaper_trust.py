"""revtunnel-reaper under attack: forged sshd lines, many sessions of one key, a leaked key in a loop.

The spokes' tunnels run during this module: each attack must leave them untouched. A tunnel's session is
identified by the hub process that holds its listener (``ss -p``; the hub container has SYS_PTRACE).
"""

import base64
import json
import re
import shlex
import time

import pytest
from conftest import HUB, OPERATOR, SPOKES, TUNNEL_KEY, Attacker, hub_reads_banner, lab_host

REAPER = "revtunnel-reaper.service"
MALLORY = "rt-sec-mallory"


@pytest.fixture(scope="module")
def tunnels_up(hub, registry):
    ports = {name: registry["ports"][name]["ssh"] for name in SPOKES}
    for name, port in ports.items():
        lab_host(name).run_test(f"systemctl start revtunnel@{HUB}.service")
        assert hub_reads_banner(hub, port, timeout=60), name
    return ports


def holder(hub, port):
    """The pid of the hub process listening on PORT (the tunnel session's sshd child), or None."""
    out = hub.check_output(f"ss -Htlnp 'sport = :{port}'")
    found = re.search(r"pid=(\d+)", out)
    return int(found[1]) if found else None


def holders(hub, ports):
    return {name: holder(hub, port) for name, port in ports.items()}


def fingerprints(hub):
    """{spoke: SHA256 fingerprint} of the tunnel keys, read from the hub's authorized_keys."""
    out = hub.check_output("ssh-keygen -lf /etc/ssh/revtunnel/authorized_keys")
    return {line.split()[2]: line.split()[1] for line in out.splitlines() if len(line.split()) >= 3}


def reaper_state(hub):
    """(ActiveState, NRestarts) of the reaper."""
    return tuple(hub.check_output(f"systemctl show -p {prop} --value {REAPER}").strip()
                 for prop in ("ActiveState", "NRestarts"))


def mark(hub):
    return hub.check_output("date '+%Y-%m-%d %H:%M:%S'").strip()


def reaper_log(hub, since, priority="debug"):
    return hub.check_output(f"journalctl -u {REAPER} -p {priority} --since {shlex.quote(since)} --no-pager -o cat")


def test_forged_sshd_lines_by_a_hub_account_end_no_tunnel(hub, tunnels_up):
    hub.run(f"id {MALLORY} || useradd -M -s /bin/sh {MALLORY}")
    before, state = holders(hub, tunnels_up), reaper_state(hub)
    assert all(before.values()), before
    for fp in fingerprints(hub).values():
        line = f"Accepted publickey for tunnel from 10.9.9.9 port 1 ssh2: ED25519 {fp}"
        for tag in ("sshd", "sshd-session"):
            hub.run_test(f"runuser -u {MALLORY} -- logger -p auth.info -t {tag} {shlex.quote(line)}")
        # A process of that account titled like sshd's monitor, logging the line under its own pid.
        perl = ("use Socket; $0 = q{sshd: tunnel [priv]}; socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or die;"
                f" send($s, qq{{<38>sshd[$$]: {line}}}, 0, pack_sockaddr_un(q{{/dev/log}})) or die; sleep 15;")
        hub.run_test(f"runuser -u {MALLORY} -- perl -e {shlex.quote(perl)} >/dev/null 2>&1 &")
    time.sleep(5)
    assert holders(hub, tunnels_up) == before
    for port in tunnels_up.values():
        assert hub_reads_banner(hub, port, timeout=5)
    assert reaper_state(hub) == state == ("active", state[1]), reaper_state(hub)
    # The impostor processes were not even signalled: they still run.
    assert hub.run(f"pgrep -u {MALLORY} -f 'sshd: tunnel'").rc == 0
    hub.run(f"pkill -u {MALLORY}")


def test_a_leaked_key_in_a_login_loop_holds_at_most_three_sessions(hub, registry, tunnels_up):
    """21.2: `ssh -N` with a spoke's key every 0.4 s for 50 s. Each extra session is ended right after its login (its
    key's live session holds the port), not after a 20 s grace: at most 3 sessions of that key at any sample, and
    sshd's memory stays within twice what the tunnels alone take."""
    name = SPOKES[0]
    attacker = Attacker(name, registry["ports"])
    before = holders(hub, tunnels_up)
    baseline = json.loads(hub.check_output(f"python3 -c {shlex.quote(SESSIONS.format(seconds=2))}"))
    assert baseline["sessions_max"] == len(SPOKES), baseline
    loop = (f"end=$((SECONDS + 50)); while [ $SECONDS -lt $end ]; do {attacker.ssh('-N')} </dev/null >/dev/null 2>&1 &"
            " sleep 0.4; done")
    attacker.host.run_test(f"nohup bash -c {shlex.quote(loop)} >/dev/null 2>&1 &")
    try:
        seen = json.loads(hub.check_output(f"python3 -c {shlex.quote(SESSIONS.format(seconds=52))}"))
    finally:
        attacker.host.run(f"pkill -f 'SECONDS [+] 50'; pkill -f -- '[-]F /dev/null -i {TUNNEL_KEY}'")
    logins = int(hub.check_output(
        "journalctl -u ssh --since -70s --no-pager -o cat | grep -c 'Accepted publickey for tunnel' || true"))
    print(f"login loop: {logins} logins, sessions of the key at most {seen['sessions_max'] - len(SPOKES) + 1}, "
          f"sshd RSS {seen['rss_max_kib'] / 1024:.1f} MiB (tunnels alone {baseline['rss_max_kib'] / 1024:.1f} MiB)")
    assert logins >= 60, f"only {logins} logins: the loop did not run, the test proves nothing"
    # The spoke's own tunnel plus at most two of the loop's sessions, at every sample.
    assert seen["sessions_max"] - (len(SPOKES) - 1) <= 3, seen
    assert seen["rss_max_kib"] <= 2 * baseline["rss_max_kib"], (seen, baseline)
    assert holders(hub, tunnels_up) == before
    assert hub_reads_banner(hub, tunnels_up[name], timeout=5)


# Sample the tunnel account's authenticated sessions and sshd's resident memory every 0.25 s for a while. A session
# is a monitor titled "sshd: tunnel [priv]" (sshd-session on OpenSSH 10) whose child is no longer the pre-auth
# "[net]" one: OpenSSH titles the monitor with the user name before the key is checked.
SESSIONS = """
import json, os, re, time
end, top, rss = time.time() + {seconds}, 0, 0
while time.time() < end:
    titles, parents, total = {{}}, {{}}, 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            titles[pid] = open(f"/proc/{{pid}}/cmdline", "rb").read().replace(b"\\0", b" ").decode().strip()
            status = open(f"/proc/{{pid}}/status").read()
        except OSError:
            continue
        parents[pid] = re.search(r"^PPid:\\s+(\\d+)", status, re.M).group(1)
        resident = re.search(r"^VmRSS:\\s+(\\d+)", status, re.M)  # none for a process that is exiting
        if re.search(r"^Name:\\s+sshd", status, re.M) and resident:
            total += int(resident.group(1))
    sessions = sum(1 for pid, title in titles.items() if re.match(r"^sshd(-session)?: tunnel \\[priv\\]$", title)
                   and any(parents.get(child) == pid and re.match(r"^sshd(-session)?: tunnel$", t)
                           for child, t in titles.items()))
    top, rss = max(top, sessions), max(rss, total)
    time.sleep(0.25)
print(json.dumps({{"sessions_max": top, "rss_max_kib": rss}}))
"""


def test_restarting_the_reaper_replays_the_journal_and_ends_no_tunnel(hub, tunnels_up):
    before = holders(hub, tunnels_up)
    for _restart in range(3):
        hub.run_test(f"systemctl restart {REAPER}")
        time.sleep(3)
    assert holders(hub, tunnels_up) == before
    assert reaper_state(hub)[0] == "active"


def test_a_leaked_key_in_a_loop_never_takes_the_live_spokes_port(hub, registry, tunnels_up):
    name = SPOKES[-1]
    spoke, operator = lab_host(name), lab_host(OPERATOR)
    port = tunnels_up[name]
    attacker = Attacker(name, registry["ports"])
    real = hub.check_output(f"python3 -c {shlex.quote(BANNER.format(port=port))}").strip()
    assert real.startswith("SSH-"), real
    before = holder(hub, port)
    since = mark(hub)
    # The key and the pinned hub key copied to another machine; its forward leads to an impostor's banner.
    for path in (TUNNEL_KEY, f"/etc/revtunnel/{HUB}.known_hosts"):
        blob = base64.b64encode(spoke.file(path).content).decode()
        operator.run_test(f"mkdir -p $(dirname {path}) && echo {blob} | base64 -d > {path} && chmod 600 {path}")
    operator.run_test(f"rm -f /tmp/rt-sec-leak.log; nohup python3 -c {shlex.quote(IMPOSTOR)} >/dev/null 2>&1 &")
    loop = (f"end=$((SECONDS + 40)); while [ $SECONDS -lt $end ]; do "
            f"{attacker.ssh('-N', '-R', f'localhost:{port}:localhost:2299')} </dev/null >>/tmp/rt-sec-leak.log 2>&1;"
            " sleep 0.2; done")
    operator.run_test(f"nohup bash -c {shlex.quote(loop)} >/dev/null 2>&1 &")
    try:
        samples = json.loads(hub.check_output(f"python3 -c {shlex.quote(SAMPLER.format(port=port))}"))
    finally:
        # The [x] keeps each pattern from matching the shell that runs pkill.
        operator.run(f"pkill -f 'SECONDS [+] 40'; pkill -f -- '[-]F /dev/null -i {TUNNEL_KEY}';"
                     f" pkill -f 'rt-sec-[i]mpostor'; rm -f {TUNNEL_KEY}")
    attempts = operator.check_output("grep -c 'remote port forwarding failed' /tmp/rt-sec-leak.log || true")
    assert int(attempts.strip() or 0) >= 5, operator.run("tail /tmp/rt-sec-leak.log").stdout
    banners = samples["banners"]
    assert not any("impostor" in b for b in banners), samples
    assert sum(b == real for b in banners) >= 0.9 * len(banners), samples
    assert holder(hub, port) == before
    operator_addr = operator.check_output("hostname -i").split()[0]
    warnings = [ln for ln in reaper_log(hub, since, "warning").splitlines() if f"spoke {name}:" in ln]
    assert len(warnings) == 1, warnings
    assert operator_addr in warnings[0], warnings


# Read one banner line from a hub port (2 s), as the hub sees it.
BANNER = """
import socket
s = socket.create_connection(("127.0.0.1", {port}), 2); s.settimeout(2)
print(s.recv(256).split(b"\\n")[0].decode("ascii", "replace").strip())
"""

# Sample the port's banner every 1.5 s for 40 s: a JSON list of what came back. Faster would trip an
# OpenSSH 10 spoke's PerSourcePenalties (1 s per connection that never authenticates, blocked above 15 s).
SAMPLER = """
import json, socket, time
out, end = [], time.time() + 40
while time.time() < end:
    try:
        s = socket.create_connection(("127.0.0.1", {port}), 2); s.settimeout(2)
        out.append(s.recv(256).split(b"\\n")[0].decode("ascii", "replace").strip()); s.close()
    except OSError as exc:
        out.append("error: " + type(exc).__name__)
    time.sleep(1.5)
print(json.dumps({{"banners": out}}))
"""

# What the leaked key's forward leads to: a server that greets like sshd but names itself.
IMPOSTOR = """
import socket, sys
sys.argv[0] = "rt-sec-impostor"
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 2299)); srv.listen(16)
while True:
    conn, _ = srv.accept()
    conn.sendall(b"SSH-2.0-impostor\\r\\n"); conn.close()
"""
