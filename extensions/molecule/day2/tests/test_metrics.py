"""The hub's metrics timer: node_exporter textfile metrics that follow a tunnel down and up within one
interval, the journal history that revtunnel-status --since reads, and the unit's sandbox.

Runs on the second hub, which the other tests never restart, so its journal holds the whole run.
The scenario sets revtunnel_metrics: true and revtunnel_metrics_interval: 5.
"""

import json
import re
import shutil
import subprocess
import time

import pytest
from conftest import group, journal, lab_host, run_playbook

SPOKE = "rt-d2-spoke-a"
INTERVAL = 5
PROBE_TIMEOUT = 3
PROM = "/var/lib/prometheus/node-exporter/revtunnel.prom"


def hub_name():
    return group("hub")[1]


def up_value(hub, spoke=SPOKE):
    """revtunnel_tunnel_up of the spoke's ssh forward in the textfile, or None while it is not there."""
    text = hub.file(PROM).content_string if hub.file(PROM).exists else ""
    match = re.search(r'^revtunnel_tunnel_up\{hub="%s",spoke="%s",forward="ssh"\} (\d)$' % (hub_name(), spoke),
                      text, re.MULTILINE)
    return int(match[1]) if match else None


def wait_value(hub, want, timeout):
    """Seconds until the metric shows ``want``; fails with the unit's journal after ``timeout`` s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if up_value(hub) == want:
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"revtunnel_tunnel_up is not {want} after {timeout} s:\n"
                         + journal(hub, "revtunnel-metrics.service"))


def test_metrics_follow_a_tunnel_down_and_up_within_one_interval():
    hub, node = lab_host(hub_name()), lab_host(SPOKE)
    assert hub.service("revtunnel-metrics.timer").is_enabled
    assert hub.service("revtunnel-metrics.timer").is_running, journal(hub, "revtunnel-metrics.timer")
    wait_value(hub, 1, 60)
    unit = f"revtunnel@{hub_name()}.service"
    node.check_output(f"systemctl stop {unit}")
    try:
        # One interval for the timer, one probe deadline, and a little for the write.
        took = wait_value(hub, 0, INTERVAL + PROBE_TIMEOUT + 4)
        print(f"revtunnel_tunnel_up showed 0 after {took:.1f} s")
    finally:
        node.check_output(f"systemctl start {unit}")
    wait_value(hub, 1, 60)
    text = hub.file(PROM).content_string
    assert f'revtunnel_spokes{{hub="{hub_name()}"}} {len(group("spokes"))}' in text
    assert re.search(r'^revtunnel_tunnel_last_change_timestamp_seconds\{hub="%s",spoke="%s",forward="ssh"\} '
                     r'(\d+\.\d+)$' % (hub_name(), SPOKE), text, re.MULTILINE)
    assert f'revtunnel_tunnel_sessions_replaced_total{{hub="{hub_name()}",spoke="{SPOKE}"}}' in text
    state = json.loads(hub.check_output("cat /var/lib/revtunnel-metrics/state.json"))
    assert state["tunnels"][SPOKE]["ssh"]["up"] is True
    assert time.time() - state["tunnels"][SPOKE]["ssh"]["since"] < 120


def test_history_shows_the_stop_and_the_start():
    hub = lab_host(hub_name())
    lines = hub.check_output("journalctl -u revtunnel-metrics.service --since -1h --no-pager -o cat")
    assert f"revtunnel: {SPOKE}/ssh down (" in lines and f"revtunnel: {SPOKE}/ssh up" in lines, lines
    report = json.loads(hub.check_output("revtunnel-status --since 1h --json"))
    mine = [t for t in report["tunnels"] if t["spoke"] == SPOKE and t["forward"] == "ssh"]
    assert len(mine) == 1, report
    closed = [o for o in mine[0]["outages"] if o["down_at"] and o["up_at"]]
    assert closed, mine[0]
    assert 0 < closed[-1]["seconds"] < 120
    assert mine[0]["now"] == "up" and 0 < mine[0]["availability"] < 1
    table = hub.check_output("revtunnel-status --since 1h")
    assert "AVAILABILITY" in table and SPOKE in table and "down " in table, table


def test_promtool_accepts_the_real_metrics_file(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing on the controller: run `make test-tools` and run the tests through make")
    text = lab_host(hub_name()).file(PROM).content_string
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr + text
    # Printed to stdout, the same metrics.
    out = lab_host(hub_name()).run("revtunnel-status --prometheus")
    assert out.rc in (0, 1) and "# TYPE revtunnel_tunnel_up gauge" in out.stdout
    proc = subprocess.run([promtool, "check", "metrics"], input=out.stdout, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_metrics_unit_is_sandboxed():
    hub = lab_host(hub_name())
    out = hub.check_output("systemd-analyze security revtunnel-metrics.service --no-pager")
    score = float(re.search(r"Overall exposure level for revtunnel-metrics\.service: (\d+\.\d+)", out)[1])
    print(f"systemd-analyze security revtunnel-metrics.service: {score}")
    assert score <= 2.0, out
    assert hub.run("systemctl is-failed revtunnel-metrics.service").stdout.strip() != "failed", \
        journal(hub, "revtunnel-metrics.service")


def test_switched_off_the_timer_stops_and_its_units_and_output_go_then_it_comes_back():
    # Last in this file: the journal history above is read before the timer is stopped.
    hub = lab_host(hub_name())
    off = run_playbook("site.yml", "--limit", hub_name(), "-e", "revtunnel_metrics=false")
    assert off.returncode == 0, off.stdout[-3000:] + off.stderr
    assert not hub.service("revtunnel-metrics.timer").is_running
    for path in ("/etc/systemd/system/revtunnel-metrics.service", "/etc/systemd/system/revtunnel-metrics.timer", PROM):
        assert not hub.file(path).exists, path
    on = run_playbook("site.yml", "--limit", hub_name())
    assert on.returncode == 0, on.stdout[-3000:] + on.stderr
    assert hub.service("revtunnel-metrics.timer").is_enabled
    assert hub.service("revtunnel-metrics.timer").is_running, journal(hub, "revtunnel-metrics.timer")
    wait_value(hub, 1, 60)
