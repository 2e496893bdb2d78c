# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Prometheus' own promtool judges the metrics the hub writes and the alert rules the collection ships.

promtool is a Debian binary (make test-tools extracts it to .cache/test-tools/bin), not a Python package, so these
tests live beside the lab tests (make test), not with the unit tests that ansible-test runs in its own venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "docs" / "prometheus" / "revtunnel-alerts.yml"
sys.path.insert(0, str(ROOT / "tests" / "unit" / "plugins" / "plugin_utils" / "_commands"))
sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import metrics  # noqa: E402
from test_metrics import sample_text  # noqa: E402


def promtool():
    # On PATH, or where `make test-tools` extracts it (pytest may be started without make's PATH).
    path = shutil.which("promtool") or shutil.which("promtool", path=str(ROOT / ".cache" / "test-tools" / "bin"))
    if path is None:
        pytest.fail("promtool is missing: run `make test-tools` (extracts Debian's promtool to .cache/test-tools/bin)")
    return path


def test_promtool_accepts_the_metrics():
    proc = subprocess.run([promtool(), "check", "metrics"], input=sample_text(), capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    empty = metrics.render_prometheus("hub", [], metrics.empty_state(), [])
    proc = subprocess.run([promtool(), "check", "metrics"], input=empty, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_accepts_the_alert_rules_and_their_tests():
    proc = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 rules found" in proc.stdout
    proc = subprocess.run([promtool(), "test", "rules", ALERTS.with_suffix(".test.yml").name],
                          cwd=ALERTS.parent, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
