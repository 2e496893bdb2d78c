"""Fixtures of the tests against the demo lab (the helpers are in demolab.py)."""

import subprocess

import pytest
from demolab import DEMO_CONTAINERS, DEMO_INVENTORY, ROOT, running_demo_containers


@pytest.fixture(scope="session")
def demo_lab():
    """The demo lab's inventory: the running lab, or one started here (`demo.sh up`) and removed afterwards."""
    started = False
    if not (DEMO_INVENTORY.is_file() and running_demo_containers() >= DEMO_CONTAINERS):
        proc = subprocess.run(["bash", ROOT / "scripts/lab/demo.sh", "up"], cwd=ROOT, capture_output=True, text=True,
                              timeout=1800, check=False)
        assert proc.returncode == 0, f"demo.sh up failed:\n{proc.stdout}\n{proc.stderr}"
        started = True
    yield DEMO_INVENTORY
    if started:
        subprocess.run(["bash", ROOT / "scripts/lab/demo.sh", "down"], cwd=ROOT, capture_output=True, check=False)
