# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the port_allocation module file the way Ansible does: a subprocess fed JSON args."""

from __future__ import annotations

import ast
import functools
import json

import pytest
import yaml


@pytest.fixture
def run_module(module_runner, module_path):
    """Return a function that runs the module with args and gives (exit code, parsed JSON)."""
    return functools.partial(module_runner, module_path)


@pytest.fixture
def registry(tmp_path):
    return tmp_path / "hub" / "ports.json"


def base_args(registry, **extra):
    args = {
        "path": str(registry),
        "range_start": 40000,
        "range_end": 40999,
        "spokes": [{"name": "lab-pc-1"}, {"name": "lab-pc-2", "port": 40005, "forwards": ["ssh", "rdp"]}],
        "prune": True,
    }
    args.update(extra)
    return args


def test_check_mode_reports_and_writes_nothing(run_module, registry):
    rc, result = run_module(base_args(registry), check_mode=True, diff=True)
    assert rc == 0, result
    assert result["changed"] is True
    assert result["ports"]["lab-pc-2"]["ssh"] == 40005
    assert set(result["ports"]) == {"lab-pc-1", "lab-pc-2"}
    assert result["added"] == ["lab-pc-1/ssh", "lab-pc-2/rdp", "lab-pc-2/ssh"]
    assert result["registry"] == str(registry)
    assert not registry.parent.exists()
    assert result["diff"]["before"] == "{}\n"
    assert '"lab-pc-2": {"rdp": ' in result["diff"]["after"]
    assert result["diff"]["before_header"].startswith(str(registry))


def test_apply_then_idempotent_with_diff(run_module, registry):
    rc, first = run_module(base_args(registry))
    assert rc == 0 and first["changed"] is True
    assert "diff" not in first
    assert "backup_file" not in first
    on_disk = json.loads(registry.read_text())
    assert on_disk["version"] == 2
    assert {name: entry["ports"] for name, entry in on_disk["spokes"].items()} == first["ports"]

    for check_mode in (True, False):
        rc, again = run_module(base_args(registry), check_mode=check_mode, diff=True)
        assert rc == 0 and again["changed"] is False
        assert again["ports"] == first["ports"]
        assert again["diff"]["before"] == again["diff"]["after"]
        assert again["added"] == again["released"] == again["moved"] == []


def test_diff_shows_released_and_moved(run_module, registry):
    run_module(base_args(registry))
    args = base_args(registry, spokes=[{"name": "lab-pc-2", "port": 40007}])
    rc, result = run_module(args, diff=True)
    assert rc == 0 and result["changed"] is True
    assert result["released"] == ["lab-pc-1/ssh", "lab-pc-2/rdp"]
    assert result["moved"] == [{"entry": "lab-pc-2/ssh", "from": 40005, "to": 40007}]
    assert '"lab-pc-1"' in result["diff"]["before"] and '"lab-pc-1"' not in result["diff"]["after"]
    assert result["backup_file"] == f"{registry}.bak"


def test_string_port_is_converted_by_the_argument_spec(run_module, registry):
    rc, result = run_module(base_args(registry, spokes=[{"name": "a", "port": "40010"}]), check_mode=True)
    assert rc == 0 and result["ports"] == {"a": {"ssh": 40010}}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"range_start": 40999, "range_end": 40000}, "range_start (40999) is greater than range_end (40000)"),
        ({"range_start": 100}, "outside 1024-65535"),
        ({"spokes": [{"name": "a"}, {"name": "a"}]}, "'a' is listed twice"),
        ({"spokes": [{"name": ""}]}, "name '' cannot name a spoke"),
        ({"spokes": [{"name": "a", "forwards": ["Web"]}]}, "bad forward name 'Web'"),
        ({"spokes": [{"name": "a", "port": 40001}, {"name": "b", "port": 40001}]}, "pinned for both a and b"),
        ({"range_end": 40001, "spokes": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}, "is too small"),
    ],
)
def test_bad_input_fails_and_leaves_registry_alone(run_module, registry, extra, expected):
    run_module(base_args(registry))
    before = registry.read_bytes()
    rc, result = run_module(base_args(registry, **extra))
    assert rc == 1
    assert result["failed"] is True
    assert expected in result["msg"]
    assert "exception" not in result
    assert registry.read_bytes() == before


def test_missing_spokes_is_refused_by_the_argument_spec(run_module, registry):
    args = base_args(registry)
    del args["spokes"]
    rc, result = run_module(args)
    assert rc == 1 and "spokes" in result["msg"]


def test_corrupt_registry_fails_with_path_and_advice(run_module, registry):
    registry.parent.mkdir(parents=True)
    registry.write_text('{"version": 1, "ports": ')
    rc, result = run_module(base_args(registry))
    assert rc == 1
    assert str(registry) in result["msg"] and "not valid JSON" in result["msg"] and ".bak" in result["msg"]
    assert registry.read_text() == '{"version": 1, "ports": '


def test_unknown_version_fails_in_check_mode_too(run_module, registry):
    registry.parent.mkdir(parents=True)
    registry.write_text('{"version": 3, "ports": {}}')
    rc, result = run_module(base_args(registry), check_mode=True)
    assert rc == 1 and "format version 3" in result["msg"]


def test_os_error_carries_a_traceback(run_module, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    # ansible-core 2.19 returns tracebacks only when asked, as -vvv does; older ones always return them
    asked = {"_ansible_tracebacks_for": ["error"]} if _core_version() >= (2, 19) else {}
    rc, result = run_module(base_args(blocker / "ports.json"), **asked)
    assert rc == 1
    assert result["msg"].startswith(f"cannot update the port registry {blocker / 'ports.json'}")
    assert "is not a directory" in result["msg"]
    assert "Traceback" in result["exception"]


def _core_version():
    from ansible.module_utils.ansible_release import __version__

    return tuple(int(part) for part in __version__.split(".")[:2])


def _docs(module_path):
    tree = ast.parse(module_path.read_text())
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], "id", None) in {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    }


def test_documentation_matches_the_argument_spec(module_path):
    docs = _docs(module_path)
    documentation = yaml.safe_load(docs["DOCUMENTATION"])
    yaml.safe_load(docs["EXAMPLES"])
    returned = yaml.safe_load(docs["RETURN"])
    assert documentation["module"] == "port_allocation"
    assert set(documentation["options"]) == {"path", "range_start", "range_end", "spokes", "prune"}
    assert set(documentation["options"]["spokes"]["suboptions"]) == {"name", "port", "forwards"}
    assert {"check_mode", "diff_mode", "safe_file_operations"} <= set(documentation["attributes"])
    # idempotent and platform come from the collection's own fragment
    assert "hubspoke.revtunnel._attributes" in documentation["extends_documentation_fragment"]
    assert {"ports", "added", "released", "moved", "registry"} <= set(returned)
