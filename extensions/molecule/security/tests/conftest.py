"""Helpers of the security scenario: an attacker on a spoke who holds that spoke's tunnel key."""

import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tests" / "lab"))

from labtest import ROOT, group, hub, journal, lab_host, registry, run_playbook, wait_for  # noqa: E402

# Re-exported: the scenario's tests import the helpers from here and pytest finds the fixtures here.
__all__ = ["ROOT", "group", "hub", "journal", "lab_host", "registry", "run_playbook", "wait_for"]

HUB = group("hub")[0]
SPOKES = group("spokes")
OPERATOR = group("operators")[0]
UNIT = f"revtunnel@{HUB}.service"
TUNNEL_KEY = "/var/lib/revtunnel/id_ed25519"


class HubLog:
    """sshd's journal on the hub from a mark on: shows why sshd refused a request."""

    def __init__(self, hub_host):
        self.hub = hub_host
        out = hub_host.check_output("journalctl -u ssh -n 0 --show-cursor --no-pager")
        self.cursor = out.rsplit("-- cursor: ", 1)[1].strip()

    def text(self):
        return self.hub.run(f"journalctl -u ssh --after-cursor={shlex.quote(self.cursor)} --no-pager -o cat").stdout

    def wait(self, *needles, timeout=8.0):
        """The log since the mark once every needle is in it (or whatever it is after timeout)."""
        def every_needle():
            text = self.text()
            return text if all(n in text for n in needles) else ""

        text = wait_for(every_needle, timeout)
        return text or self.text()


def hub_reads_banner(hub_host, port, timeout=20):
    """True once the hub reads an SSH banner on its loopback port (a tunnel is up on it)."""
    probe = ("python3 -c 'import socket,sys,time\n"
             f"end = time.time() + {timeout}\n"
             "while time.time() < end:\n"
             "    try:\n"
             f"        s = socket.create_connection((\"127.0.0.1\", {port}), 2); s.settimeout(3)\n"
             "        if s.recv(8).startswith(b\"SSH-\"): sys.exit(0)\n"
             "    except OSError: pass\n"
             "    time.sleep(0.3)\n"
             "sys.exit(1)'")
    return hub_host.run(probe).rc == 0


class Attacker:
    """Root on a spoke, using the spoke's own tunnel key against the hub's tunnel account."""

    def __init__(self, name, ports):
        self.name = name
        self.host = lab_host(name)
        self.port = ports[name]["ssh"]
        self.other = next(ports[s]["ssh"] for s in SPOKES if s != name)
        cfg = self.host.check_output(f"ssh -G -F /etc/revtunnel/{HUB}.ssh_config revtunnel-hub")
        settings = dict(line.split(" ", 1) for line in cfg.splitlines() if " " in line)
        self.hub_address = settings["hostname"]
        self.hub_user = settings["user"]

    def ssh(self, *options, command=None, login=None):
        """The ssh command line with the tunnel key and the pinned hub key, plus options (and a command)."""
        base = ["ssh", "-F", "/dev/null", "-i", TUNNEL_KEY, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile=/etc/revtunnel/{HUB}.known_hosts",
                "-o", f"HostKeyAlias=revtunnel-hub-{HUB}", "-o", "HostKeyAlgorithms=ssh-ed25519",
                "-o", "ExitOnForwardFailure=yes", "-o", "ConnectTimeout=10", "-l", login or self.hub_user]
        return shlex.join([*base, *options, self.hub_address, *([command] if command else [])])

    def run(self, *options, command=None, timeout=20, env=""):
        """Run ssh to the hub with stdin closed; returns testinfra's CommandResult."""
        return self.host.run(f"{env} timeout {timeout} {self.ssh(*options, command=command)} </dev/null")

    @contextmanager
    def background(self, *args, tag="bg"):
        """Keep an ssh -N session with args open while the block runs; yields a callable giving its stderr."""
        log, pid = f"/tmp/rt-sec-{tag}.log", f"/tmp/rt-sec-{tag}.pid"
        self.host.run_test(f"{self.ssh('-N', *args)} </dev/null >{log} 2>&1 & echo $! >{pid}")
        try:
            yield lambda: self.host.run(f"cat {log}").stdout
        finally:
            self.host.run(f"kill $(cat {pid}) 2>/dev/null; rm -f {pid}")

    def listening(self, port):
        return wait_for(lambda: f":{port} " in self.host.check_output("ss -Htln") + " ", timeout=10)


@pytest.fixture(scope="module")
def tunnels_stopped(hub, registry):  # noqa: F811 - the shared fixtures, imported above
    """Stop every spoke's tunnel while the attacks run, so a port refused is refused by rule, not busy."""
    for name in SPOKES:
        lab_host(name).run_test(f"systemctl stop {UNIT}")
    yield
    for name in SPOKES:
        lab_host(name).run_test(f"systemctl start {UNIT}")
    for name in SPOKES:
        assert hub_reads_banner(hub, registry["ports"][name]["ssh"], timeout=60), journal(lab_host(name), UNIT)
