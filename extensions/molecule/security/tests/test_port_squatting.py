"""No other account on the hub can hold a spoke's port, by any path, and status never calls a squatter up.

The reaper links an eBPF bind filter to the hub's cgroup: only the tunnel account binds a TCP port of the spokes'
range. An unprivileged account (a login session), a service's account (a systemd service), root, and every way to
squat that the red team found (a listener, a bind with no listener that connects out, a bind() loop racing the
tunnel's restart; a TIME_WAIT left behind needs a bind first) are refused with EPERM and named in the journal. With
the filter gone (the reaper stopped), a squatter that takes the port is reported SQUATTED by revtunnel-status and
the metrics, naming the account, and the reaper ends its process once it runs again (docs/security.md).
"""

import json
import shlex
import time

import pytest
from conftest import SPOKES, UNIT, hub_reads_banner, lab_host, wait_for

REAPER = "revtunnel-reaper.service"
MALLORY = "rt-sec-mallory"
MODES = ("listen", "connect", "loop")

# Runs on the hub as some account: try to take PORT one way; prints what happened.
SQUAT = r"""
import socket, sys, time
mode, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + seconds
def impostor(s):
    s.listen(8)
    print("holding", flush=True)
    while time.time() < end:
        c, _peer = s.accept()
        c.sendall(b"SSH-2.0-impostor\r\n")
        c.close()  # closing first leaves TIME_WAIT on the spoke's port
try:
    if mode == "loop":
        tries = 0
        while time.time() < end:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                tries += 1
                if tries == 1:
                    print(f"refused: {exc}", flush=True)
                s.close()
                time.sleep(0.001)
                continue
            impostor(s)
    else:
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        if mode == "connect":
            s.connect(("127.0.0.1", 22))
            print("holding", flush=True)
            time.sleep(seconds)
        else:
            impostor(s)
except OSError as exc:
    print(f"refused: {exc}", flush=True)
"""


@pytest.fixture(scope="module")
def squat_script(hub):
    for account in (MALLORY, *(f"{MALLORY}-{mode}" for mode in MODES)):
        hub.run(f"id {account} || useradd -M -s /bin/sh {account}")
    hub.check_output(f"cat > /usr/local/bin/rt-sec-squat.py <<'PY'\n{SQUAT}PY")
    hub.run_test("chmod 0755 /usr/local/bin/rt-sec-squat.py")
    return "/usr/local/bin/rt-sec-squat.py"


def real_banner(hub, port, timeout=30):
    """True once the hub reads the spoke's own sshd on PORT (an impostor's SSH-2.0 banner does not count)."""
    probe = ("python3 -c 'import socket\n"
             f"s = socket.create_connection((\"127.0.0.1\", {port}), 3); s.settimeout(3); print(s.recv(64))'")
    return wait_for(lambda: "OpenSSH" in hub.run(probe).stdout, timeout=timeout)


def mark(hub):
    return hub.check_output("date '+%Y-%m-%d %H:%M:%S'").strip()


def reaper_log(hub, since):
    return hub.check_output(f"journalctl -u {REAPER} --since {shlex.quote(since)} --no-pager -o cat")


def test_the_bind_filter_is_linked_and_the_reaper_kept_no_privilege(hub):
    assert wait_for(lambda: "bind filter linked" in hub.check_output(f"journalctl -u {REAPER} -b --no-pager -o cat"),
                    timeout=15), hub.run(f"journalctl -u {REAPER} -n 20 --no-pager").stdout
    pid = hub.check_output(f"systemctl show -p MainPID --value {REAPER}").strip()
    effective = int(hub.check_output(f"awk '/^CapEff/ {{print $2}}' /proc/{pid}/status"), 16)
    wanted = (1 << 19) | (1 << 2) | (1 << 5) | (1 << 12)
    assert effective == wanted, f"CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_KILL, CAP_NET_ADMIN only: {effective:#x}"


@pytest.mark.parametrize("mode", MODES)
def test_no_account_can_take_a_stopped_spokes_port_and_the_journal_names_it(hub, registry, squat_script, mode):
    """20.3 / 21.4: the spoke is stopped, an account squats its port one way, the spoke starts again. Each way has
    its own account: the reaper names an account at most once a minute."""
    squatter = f"{MALLORY}-{mode}"
    name = SPOKES[0]
    spoke, port = lab_host(name), registry["ports"][name]["ssh"]
    spoke.run_test(f"systemctl stop {UNIT}")
    assert wait_for(lambda: f":{port} " not in hub.check_output("ss -Htln") + " ", timeout=15)
    since = mark(hub)
    hub.run_test(f"runuser -u {squatter} -- python3 {squat_script} {mode} {port} 25 >/tmp/rt-sec-squat.out 2>&1 &")
    time.sleep(2)
    started = time.monotonic()
    spoke.run_test(f"systemctl start --no-block {UNIT}")
    try:
        assert real_banner(hub, port, timeout=30), hub.run("cat /tmp/rt-sec-squat.out").stdout
        took = time.monotonic() - started
    finally:
        hub.run(f"pkill -u {squatter} -f rt-sec-squat")
    banner = hub.check_output(f"python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", {port}), 3);"
                              " s.settimeout(3); print(s.recv(64))'")
    assert "impostor" not in banner and "OpenSSH" in banner, banner
    print(f"{mode}: spoke back {took:.1f} s after its start; squatter: {hub.check_output('cat /tmp/rt-sec-squat.out')}")
    assert "refused" in hub.check_output("cat /tmp/rt-sec-squat.out")

    def named():
        text = reaper_log(hub, since)
        return text if f"by account {squatter}" in text else ""
    log = wait_for(named, timeout=10)
    assert f"refused binds by account {squatter}" in log and f"port {port} (spoke {name}/ssh)" in log, log


def test_root_and_a_services_account_are_refused_too(hub, registry, squat_script):
    port = registry["ports"][SPOKES[0]]["ssh"] + 500
    assert "refused: [Errno 1] Operation not permitted" in hub.run(f"python3 {squat_script} listen {port} 3").stdout
    # A service, as a cron job or a daemon would run: its own unit and cgroup, a system account.
    hub.run("systemctl reset-failed rt-sec-squat-svc 2>/dev/null")
    hub.run_test(f"systemd-run --unit rt-sec-squat-svc -p User=www-data python3 {squat_script} listen {port} 3")

    def refused():
        text = hub.check_output("journalctl -u rt-sec-squat-svc -o cat --no-pager")
        return text if "refused" in text else ""
    out = wait_for(refused, timeout=10)
    assert "refused: [Errno 1] Operation not permitted" in out, out


def test_the_tunnel_accounts_own_sessions_pass_the_filter(hub, registry):
    """A filter must never block the tunnel: every spoke's session rebinds its ports after a restart."""
    for name in SPOKES:
        lab_host(name).run_test(f"systemctl restart {UNIT}")
    for name in SPOKES:
        assert hub_reads_banner(hub, registry["ports"][name]["ssh"], timeout=30), name


def test_a_squatter_that_got_in_is_squatted_in_status_and_metrics_then_ended(hub, registry, squat_script):
    """21.4: with the filter gone (reaper stopped) mallory takes the port and answers SSH-2.0; status and metrics
    say SQUATTED naming mallory; the reaper, started again, ends the squatter and names it; the spoke comes back."""
    name = SPOKES[0]
    spoke, port = lab_host(name), registry["ports"][name]["ssh"]
    spoke.run_test(f"systemctl stop {UNIT}")
    hub.run_test(f"systemctl stop {REAPER}")
    try:
        assert wait_for(lambda: f":{port} " not in hub.check_output("ss -Htln") + " ", timeout=15)
        hub.run_test(f"runuser -u {MALLORY} -- python3 {squat_script} listen {port} 120 >/tmp/rt-sec-squat.out 2>&1 &")
        assert wait_for(lambda: "holding" in hub.check_output("cat /tmp/rt-sec-squat.out"), timeout=10)
        table = hub.run("revtunnel-status")
        assert table.rc == 1 and "SQUATTED" in table.stdout and f"account {MALLORY}" in table.stdout, table.stdout
        rows = {r["spoke"]: r for r in json.loads(hub.run("revtunnel-status --json").stdout)}
        assert (rows[name]["state"], rows[name]["squatted_by"], rows[name]["up"]) == ("squatted", MALLORY, False)
        assert "it answers: SSH-2.0-impostor" in rows[name]["detail"], rows[name]
        metrics = hub.run("revtunnel-status --prometheus").stdout
        assert f'spoke="{name}",forward="ssh",account="{MALLORY}"}} 1' in metrics, metrics
        since = mark(hub)
    finally:
        hub.run_test(f"systemctl start {REAPER}")
    spoke.run_test(f"systemctl start --no-block {UNIT}")
    assert real_banner(hub, port, timeout=30), reaper_log(hub, since)

    def ended():
        text = reaper_log(hub, since)
        return text if f"of account {MALLORY}: it held port {port}" in text else ""
    log = wait_for(ended, timeout=10) or reaper_log(hub, since)
    assert f"port {port} (spoke {name}/ssh) is squatted: account {MALLORY}" in log, log
    assert f"of account {MALLORY}: it held port {port}" in log, log
    assert hub.run(f"pgrep -u {MALLORY} -f rt-sec-squat").rc != 0
