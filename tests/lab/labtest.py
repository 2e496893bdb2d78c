"""Helpers shared by the testinfra checks of every molecule scenario (imported by their conftest.py)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

ROOT = Path(__file__).resolve().parents[2]
if (ROOT / "collections").is_dir() and str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document  # noqa: E402

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")


def lab_host(name):
    """A testinfra host of this scenario, by inventory name."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def group(name):
    """Inventory names of a group of this scenario."""
    out = subprocess.run([Path(sys.executable).parent / "ansible-inventory", "-i", INVENTORY, "--list"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(json.loads(out).get(name, {}).get("hosts", []))


def run_playbook(playbook, *extra, inventory=None):
    """Run a playbook against this scenario's containers (or INVENTORY); returns the completed process."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    cmd = [Path(sys.executable).parent / "ansible-playbook", "-i", inventory or INVENTORY, str(ROOT / playbook), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    return proc


def journal(host, unit, lines=40):
    """The unit's last journal lines, to print when a service check fails."""
    return host.run(f"journalctl -u {unit} -n {lines} --no-pager").stdout


@pytest.fixture(scope="session")
def hub():
    return lab_host(group("hub")[0])


def registry_view(text):
    """A registry file's content with "spokes" and a "ports" map ({spoke: {forward: port}}) for either version."""
    raw = json.loads(text)
    spokes = document.parse(text.encode("utf-8"), "the hub's registry").spokes
    return {**raw, "spokes": spokes, "ports": {name: entry["ports"] for name, entry in spokes.items()}}


def read_registry(host):
    """The registry of a hub (a testinfra host), as registry_view gives it."""
    return registry_view(host.file(document.DEFAULT_PATH).content_string)


@pytest.fixture(scope="session")
def registry(hub):
    return read_registry(hub)


def wait_for(check, timeout=15.0, step=0.3):
    """Poll check() until it returns something truthy; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)
