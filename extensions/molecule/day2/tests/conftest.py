"""The scenario's tests use the lab helpers shared by every scenario."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tests" / "lab"))

from labtest import ROOT, group, hub, journal, lab_host, registry, run_playbook, wait_for  # noqa: E402

# Re-exported: the scenario's tests import the helpers from here and pytest finds the fixtures here.
__all__ = ["ROOT", "group", "hub", "journal", "lab_host", "registry", "run_playbook", "wait_for"]
