"""Status from the hub: up, down, and bound but leading nowhere; the status playbook writes JSON."""

import json

from conftest import group, lab_host, run_playbook, wait_for


def status(hub):
    res = hub.run("revtunnel-status --json --timeout 2")
    assert res.rc in (0, 1), res.stderr
    return {(r["spoke"], r["forward"]): r for r in json.loads(res.stdout)}


def wait_rows(predicate, hub):
    """The status rows once predicate(rows) holds, or the last rows after 20 s."""
    last = {}

    def check():
        last.clear()
        last.update(status(hub))
        return predicate(last)

    wait_for(check, timeout=20.0, step=0.5)
    return last


def test_status_shows_up_down_and_bound_but_dead():
    hub = lab_host(group("hub")[0])
    spoke = group("spokes")[0]
    node = lab_host(spoke)
    rows = wait_rows(lambda r: r[(spoke, "ssh")]["up"], hub)
    assert rows[(spoke, "ssh")]["up"] and rows[(spoke, "ssh")]["latency_ms"] > 0
    try:
        # Bound but dead: the tunnel holds the hub port, the spoke's sshd is gone.
        node.check_output("systemctl stop ssh.service ssh.socket")
        rows = wait_rows(lambda r: not r[(spoke, "ssh")]["up"], hub)
        assert not rows[(spoke, "ssh")]["up"]
        port = rows[(spoke, "ssh")]["port"]
        assert hub.run(f"ss -Htln 'sport = :{port}'").stdout.strip(), "the port should still be bound"
        node.check_output("systemctl start ssh.service")
        # Down: the tunnel itself is stopped, the port is free.
        node.check_output("systemctl stop revtunnel@%s.service" % group("hub")[0])
        rows = wait_rows(lambda r: not r[(spoke, "ssh")]["up"] and "refused" in r[(spoke, "ssh")]["detail"].lower(),
                         hub)
        assert "refused" in rows[(spoke, "ssh")]["detail"].lower()
        assert hub.run("revtunnel-status").rc == 1
    finally:
        node.run("systemctl start ssh.service")
        node.run("systemctl start revtunnel@%s.service" % group("hub")[0])
    rows = wait_rows(lambda r: all(v["up"] for k, v in r.items() if k[1] == "ssh"), hub)
    assert all(v["up"] for k, v in rows.items() if k[1] == "ssh")


def test_status_playbook_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "status.json"
    proc = run_playbook("playbooks/status.yml", "-e", f"revtunnel_status_file={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SPOKE" in proc.stdout and "FORWARD" in proc.stdout
    by_hub = json.loads(out.read_text())
    assert sorted(by_hub) == group("hub")
    rows = [row for hub_rows in by_hub.values() for row in hub_rows]
    assert sorted({r["spoke"] for r in rows}) == group("spokes")
    assert {r["forward"] for r in rows} >= {"ssh"}
