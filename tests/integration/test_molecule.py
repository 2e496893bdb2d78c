"""Every molecule scenario, driven from pytest so one summary line covers the whole suite."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "extensions" / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               PY_COLORS="0", MOLECULE_NO_LOG="false")
    log = ROOT / ".cache" / f"molecule-{scenario}.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.run([Path(sys.executable).parent / "molecule", "test", "-s", scenario], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False)
    lines = log.read_text(errors="replace").splitlines()
    # The destroy step fills the tail, and CI keeps only the report: the failures come first, then the last lines.
    marks = ("FAILED ", "E   ", "fatal:", "ERROR ")
    failures = [line for line in lines if line.startswith(marks) or "AssertionError" in line]
    tail = "\n".join(failures[-60:] + ["[...]"] + lines[-60:])
    assert proc.returncode == 0, f"molecule test -s {scenario} failed (full log: {log}):\n{tail}"
