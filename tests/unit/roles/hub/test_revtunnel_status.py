"""The hub's revtunnel-status command against real sockets on loopback."""

import importlib.machinery
import importlib.util
import json
import socket
import threading
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[4] / "roles" / "hub" / "files" / "revtunnel-status"
_loader = importlib.machinery.SourceFileLoader("revtunnel_status", str(SCRIPT))
status = importlib.util.module_from_spec(importlib.util.spec_from_loader("revtunnel_status", _loader))
_loader.exec_module(status)


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
            elif self.behaviour == "http":
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                self.conns.append(conn)
            else:
                self.conns.append(conn)

    def close(self):
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


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ssh_forward_is_up_only_with_an_ssh_banner(servers):
    up, silent, closing = servers("banner"), servers("silent"), servers("close")
    rows = status.check({"ports": {"a": {"ssh": up.port}, "b": {"ssh": silent.port}, "c": {"ssh": closing.port}}},
                        timeout=0.5)
    assert [(r["spoke"], r["up"]) for r in rows] == [("a", True), ("b", False), ("c", False)]
    assert rows[0]["detail"].startswith("SSH-2.0-OpenSSH")


def test_bound_but_dead_port_is_down(servers):
    # The hub's sshd accepts on a live tunnel and closes at once when the spoke's side refuses.
    closing = servers("close")
    rows = status.check({"ports": {"a": {"ssh": closing.port, "rdp": closing.port}}}, timeout=0.5)
    assert all(not r["up"] for r in rows)
    assert "leads nowhere" in [r for r in rows if r["forward"] == "rdp"][0]["detail"]


def test_unbound_port_is_down_with_the_reason():
    rows = status.check({"ports": {"a": {"ssh": free_port()}}}, timeout=0.5)
    assert rows[0]["up"] is False
    assert "refused" in rows[0]["detail"].lower()


def test_other_forwards_are_up_when_held_open_or_answering(servers):
    silent, http = servers("silent"), servers("http")
    rows = status.check({"ports": {"a": {"rdp": silent.port, "web": http.port}}}, timeout=0.5)
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


def test_cli_reports_an_unreadable_registry(tmp_path, capsys):
    assert status.main(["--registry", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the registry" in capsys.readouterr().err
