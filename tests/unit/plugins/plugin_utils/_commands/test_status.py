"""The hub's revtunnel-status command against real sockets on loopback."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _probe
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import journal, metrics, status


class Server:
    """A loopback server that greets, closes at once, or stays silent."""

    def __init__(self, behaviour):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.behaviour = behaviour
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _peer = self.sock.accept()
            except OSError:
                return
            if self.behaviour == "banner":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                self.conns.append(conn)
            elif self.behaviour == "close":
                conn.close()
            elif self.behaviour == "escape":
                conn.sendall(b"SSH-2.0-\x1b]0;pwned\x07\x1b[2J\r\n")
                self.conns.append(conn)
            elif self.behaviour == "escape-junk":
                conn.sendall(b"\x1b[31mHELLO\x9b\x00\r\n")
                self.conns.append(conn)
            elif self.behaviour == "trickle":
                threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()
                self.conns.append(conn)
            elif self.behaviour == "http":
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                self.conns.append(conn)
            else:
                self.conns.append(conn)

    @staticmethod
    def _trickle(conn):
        """One byte every 2.5 s and never a newline: the port that once stalled the command for a minute."""
        try:
            while True:
                conn.sendall(b"S")
                time.sleep(2.5)
        except OSError:
            return

    def close(self):
        # shutdown first: close() alone leaves the socket listening while accept() blocks in the thread
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def servers():
    made = []

    def make(behaviour):
        made.append(Server(behaviour))
        return made[-1]

    yield make
    for server in made:
        server.close()


def spokes(ports):
    """read_spokes()' shape from {spoke: {forward: port}}."""
    return {name: {"ports": forwards, "keys": [], "key_from": []} for name, forwards in ports.items()}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ssh_forward_is_up_only_with_an_ssh_banner(servers):
    up, silent, closing = servers("banner"), servers("silent"), servers("close")
    rows = _probe.check_all(spokes({"a": {"ssh": up.port}, "b": {"ssh": silent.port}, "c": {"ssh": closing.port}}),
                            timeout=0.5)
    assert [(r["spoke"], r["up"]) for r in rows] == [("a", True), ("b", False), ("c", False)]
    assert rows[0]["detail"].startswith("SSH-2.0-OpenSSH")


def test_bound_but_dead_port_is_down(servers):
    # The hub's sshd accepts on a live tunnel and closes at once when the spoke's side refuses.
    closing = servers("close")
    rows = _probe.check_all(spokes({"a": {"ssh": closing.port, "rdp": closing.port}}), timeout=0.5)
    assert all(not r["up"] for r in rows)
    assert "leads nowhere" in [r for r in rows if r["forward"] == "rdp"][0]["detail"]


def test_unbound_port_is_down_with_the_reason():
    rows = _probe.check_all(spokes({"a": {"ssh": free_port()}}), timeout=0.5)
    assert rows[0]["up"] is False
    assert "refused" in rows[0]["detail"].lower()


def test_other_forwards_are_up_when_held_open_or_answering(servers):
    silent, http = servers("silent"), servers("http")
    rows = _probe.check_all(spokes({"a": {"rdp": silent.port, "web": http.port}}), timeout=0.5)
    assert all(r["up"] for r in rows)


def test_cli_prints_json_and_exits_nonzero_when_a_tunnel_is_down(servers, tmp_path, capsys):
    up = servers("banner")
    registry = tmp_path / "ports.json"
    registry.write_text(json.dumps({"version": 1, "ports": {"a": {"ssh": up.port}, "b": {"ssh": free_port()}}}))
    assert status.main(["--registry", str(registry), "--json", "--timeout", "0.5"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [(r["spoke"], r["up"]) for r in rows] == [("a", True), ("b", False)]
    assert status.main(["--registry", str(registry), "--spoke", "a", "--timeout", "0.5"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SPOKE", "FORWARD", "PORT", "STATE", "LATENCY", "DETAIL"]
    assert table[1].split()[:4] == ["a", "ssh", str(up.port), "up"]


def test_cli_reports_a_missing_registry_and_says_where_to_run_it(tmp_path, capsys):
    assert status.main(["--registry", str(tmp_path / "missing.json")]) == 2
    assert "there is no registry at" in capsys.readouterr().err


@pytest.fixture
def open_dir():
    """A directory every account may enter (pytest's own are root's alone), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="revtunnel-status-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_an_account_that_may_not_read_the_registry_is_told_to_run_as_root(open_dir, hub_zipapp):
    # The real command, with the hub's system Python, as an account that may not read the registry: as root the
    # registry is root's with mode 0640 and the command runs as nobody; as another account it is mode 0000.
    registry = open_dir / "ports.json"
    registry.write_text(json.dumps({"version": 2, "spokes": {}}))
    zipapp = open_dir / "revtunnel.pyz"
    zipapp.write_bytes(Path(hub_zipapp).read_bytes())
    zipapp.chmod(0o755)
    command = ["/usr/bin/python3", "-I", str(zipapp), "status", "--registry", str(registry)]
    if os.geteuid() == 0:
        registry.chmod(0o640)
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    else:
        registry.chmod(0o000)
    proc = subprocess.run(command, capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc
    assert f"permission denied reading {registry}: run it as root (sudo), or as a member of the group" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_reads_a_version_2_registry(servers, tmp_path, capsys):
    up = servers("banner")
    registry = tmp_path / "ports.json"
    registry.write_text(json.dumps({"version": 2, "spokes": {"a": {"ports": {"ssh": up.port}, "keys": []}}}))
    assert status.main(["--registry", str(registry), "--json", "--timeout", "0.5"]) == 0
    assert [(r["spoke"], r["up"]) for r in json.loads(capsys.readouterr().out)] == [("a", True)]


def control_bytes(text):
    """Characters a terminal could act on: everything below space except newline, DEL and C1."""
    return sorted({hex(ord(ch)) for ch in text if (ord(ch) < 32 and ch != "\n") or 127 <= ord(ch) < 160})


@pytest.mark.parametrize("mode", [[], ["--json"], ["--prometheus", "--hub", "h\x1b[2J"]])
def test_what_a_spoke_sends_reaches_no_output_as_control_bytes(servers, tmp_path, capsys, mode):
    evil, junk = servers("escape"), servers("escape-junk")
    registry = tmp_path / "ports.json"
    registry.write_text(json.dumps({"version": 1, "ports": {"a": {"ssh": evil.port}, "b": {"ssh": junk.port}}}))
    status.main(["--registry", str(registry), "--timeout", "0.5", "--state", str(tmp_path / "state.json"), *mode])
    out = capsys.readouterr().out
    if "--prometheus" in mode:
        assert 'hub="h?[2J"' in out and 'spoke="a"' in out  # the metrics carry no banner, only labels
    else:
        assert "pwned" in out and "HELLO" in out
    assert control_bytes(out) == []


def test_history_output_has_no_control_bytes_either(tmp_path, capsys, monkeypatch):
    now = time.time()
    entries = [{"__REALTIME_TIMESTAMP": str(int((now - 60) * 1e6)), "_SYSTEMD_UNIT": "revtunnel-metrics.service",
                "SYSLOG_IDENTIFIER": "revtunnel-metrics",
                "MESSAGE": "revtunnel: a/ssh down (not an SSH banner: \x1b[2Jx)"}]
    monkeypatch.setattr(journal, "entries", lambda *a, **k: entries)
    registry = tmp_path / "ports.json"
    registry.write_text(json.dumps({"version": 1, "ports": {"a": {"ssh": 1}}}))
    for mode in ([], ["--json"]):
        assert status.main(["--registry", str(registry), "--since", "1h", "--state", str(tmp_path / "s"), *mode]) == 0
        out = capsys.readouterr().out
        assert "not an SSH banner" in out and control_bytes(out) == []


def test_a_trickling_port_is_down_within_one_deadline(servers):
    # The finding: one byte every 2.5 s and no newline kept --timeout 3 busy for 60 s.
    slow = servers("trickle")
    start = time.monotonic()
    rows = _probe.check_all(spokes({"a": {"ssh": slow.port}}), timeout=3)
    assert time.monotonic() - start < 4
    assert rows[0]["up"] is False


def test_slow_spokes_do_not_delay_the_others(servers, tmp_path, capsys):
    slow = [servers("trickle") for _unused in range(5)]
    fast = servers("banner")
    ports = {f"slow-{i}": {"ssh": s.port} for i, s in enumerate(slow)}
    ports["fast"] = {"ssh": fast.port}
    registry = tmp_path / "ports.json"
    registry.write_text(json.dumps({"version": 1, "ports": ports}))
    start = time.monotonic()
    assert status.main(["--registry", str(registry), "--json", "--timeout", "1"]) == 1
    assert time.monotonic() - start < 3
    rows = {r["spoke"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fast"]["up"] and not any(rows[f"slow-{i}"]["up"] for i in range(5))


def test_many_spokes_take_about_one_timeout_not_one_each(tmp_path):
    silent = [Server("silent") for _unused in range(40)]
    try:
        start = time.monotonic()
        rows = _probe.check_all(spokes({f"s{i}": {"ssh": s.port} for i, s in enumerate(silent)}), timeout=0.5,
                                workers=32)
        assert time.monotonic() - start < 2.5
        assert len(rows) == 40 and not any(r["up"] for r in rows)
    finally:
        for server in silent:
            server.close()


def test_record_writes_metrics_state_and_logs_transitions(servers, tmp_path, capsys):
    up = servers("banner")
    registry, state, prom = tmp_path / "ports.json", tmp_path / "state.json", tmp_path / "tf" / "revtunnel.prom"
    registry.write_text(json.dumps({"version": 1, "ports": {"a": {"ssh": up.port}}}))
    args = ["--registry", str(registry), "--state", str(state), "--record", "--hub", "hub-1",
            "--timeout", "0.5", "--output", str(prom)]
    # No textfile directory yet: skipped quietly with --if-dir-exists, the state is still kept.
    assert metrics.main([*args, "--if-dir-exists"]) == 0
    assert not prom.exists()
    assert "revtunnel: a/ssh up (first seen)" in capsys.readouterr().err
    first = json.loads(state.read_text())["tunnels"]["a"]["ssh"]
    prom.parent.mkdir()
    assert metrics.main(args) == 0
    assert capsys.readouterr().err == ""  # no change, no line
    text = prom.read_text()
    assert 'revtunnel_tunnel_up{hub="hub-1",spoke="a",forward="ssh"} 1' in text
    assert f'revtunnel_tunnel_last_change_timestamp_seconds{{hub="hub-1",spoke="a",forward="ssh"}} ' \
           f'{first["since"]:.3f}' in text
    up.close()
    assert metrics.main(args) == 0
    assert "revtunnel: a/ssh down (" in capsys.readouterr().err
    assert 'revtunnel_tunnel_up{hub="hub-1",spoke="a",forward="ssh"} 0' in prom.read_text()
    assert json.loads(state.read_text())["tunnels"]["a"]["ssh"]["since"] > first["since"]
    assert [p.name for p in prom.parent.iterdir()] == ["revtunnel.prom"]


def test_the_recorders_options_are_not_the_status_commands(tmp_path):
    # The status CLI and the metrics recorder are separate entry points: the recorder's options are refused here.
    for argv in (["--output", "x"], ["--record"], ["--prometheus", "--record", "--spoke", "a"], ["--since", "soon"]):
        with pytest.raises(SystemExit) as exc:
            status.main(["--registry", str(tmp_path / "r.json"), *argv])
        assert exc.value.code == 2


def test_a_cursor_journalctl_refuses_restarts_counting_at_the_newest_line(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_journal(*match, since=None, after_cursor=None, lines=None):
        calls.append((after_cursor, lines))
        if after_cursor == "gone":
            return None
        return [{"__CURSOR": "newest", "_SYSTEMD_UNIT": "revtunnel-reaper.service", "MESSAGE": "x replaces y"}]

    monkeypatch.setattr(journal, "entries", fake_journal)
    registry, state = tmp_path / "ports.json", tmp_path / "state.json"
    registry.write_text(json.dumps({"version": 1, "ports": {}}))
    state.write_text(json.dumps({"version": 1, "tunnels": {},
                                 "reaper": {"cursor": "gone", "replaced": {"unknown": 4}, "second_address": {}}}))
    args = ["--registry", str(registry), "--state", str(state), "--record"]
    assert metrics.main(args) == 0
    assert calls == [("gone", None), (None, 1)]
    kept = json.loads(state.read_text())["reaper"]
    assert kept == {"cursor": "newest", "replaced": {"unknown": 4}, "second_address": {}}  # nothing recounted
    assert metrics.main(args) == 0
    assert json.loads(state.read_text())["reaper"]["replaced"] == {"unknown": 5}
    assert 'revtunnel_tunnel_sessions_replaced_total{hub=' in capsys.readouterr().out


def test_a_port_another_account_listens_on_is_squatted_whatever_it_answers(servers, tmp_path, capsys, monkeypatch):
    """21.4: the impostor's SSH banner does not make the tunnel up; the table, the JSON and the metrics name it."""
    up = servers("banner")
    me = os.getuid()
    rows = _probe.check_all(spokes({"a": {"ssh": up.port}}), timeout=1, owner_uid=me + 1)
    assert rows[0]["up"] is False and rows[0]["squatted_by"] == _probe._procfs.account(me)
    assert f"account {_probe._procfs.account(me)} (uid {me}) listens on the port" in rows[0]["detail"]
    assert "it answers: SSH-2.0-OpenSSH_9.2p1" in rows[0]["detail"]
    assert "SQUATTED" in status.format_table(rows)
    # The tunnel account's own listener is a tunnel as always.
    assert _probe.check_all(spokes({"a": {"ssh": up.port}}), timeout=1, owner_uid=me)[0]["up"] is True

    registry = tmp_path / "ports.json"
    registry.write_text(json.dumps({"version": 2, "spokes": {"a": {"ports": {"ssh": up.port}, "keys": []}}}))
    monkeypatch.setattr(status._procfs, "account_uid", lambda name: me + 1)
    assert status.main(["--registry", str(registry), "--json", "--user", "tunnel"]) == 1
    row = json.loads(capsys.readouterr().out)[0]
    assert row["state"] == "squatted" and row["squatted_by"] == _probe._procfs.account(me)
    text = metrics.render_prometheus("hub", rows, metrics.empty_state(), ["a"])
    assert f'revtunnel_tunnel_squatted{{hub="hub",spoke="a",forward="ssh",account="{_probe._procfs.account(me)}"}} 1' \
        in text and 'revtunnel_tunnel_up{hub="hub",spoke="a",forward="ssh"} 0' in text


def test_a_port_bound_and_connected_out_by_another_account_is_squatted(tmp_path):
    """The squatter with no listener: bind the spoke's port, connect out (nothing shows in ss -l)."""
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen()
    squat = socket.socket()
    squat.bind(("127.0.0.1", 0))
    port = squat.getsockname()[1]
    squat.connect(target.getsockname())
    try:
        rows = _probe.check_all(spokes({"a": {"ssh": port}}), timeout=0.5, owner_uid=os.getuid() + 1)
        assert rows[0]["up"] is False and "holds a socket bound to the port" in rows[0]["detail"]
    finally:
        squat.close()
        target.close()
