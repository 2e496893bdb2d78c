# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the spoke_registry module file the way Ansible does: a subprocess fed JSON args."""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import importlib.util
import os
import struct

import pytest
import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
MODULE_PATH = os.path.join(REPO_ROOT, "plugins", "modules", "spoke_registry.py")


def make_key(seed):
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + hashlib.sha256(seed.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} revtunnel@{seed}"


@pytest.fixture
def run_module(module_runner):
    """Return a function that runs the module with args and gives (exit code, parsed JSON)."""
    return functools.partial(module_runner, MODULE_PATH)


@pytest.fixture
def files(tmp_path):
    return tmp_path / "lib" / "ports.json", tmp_path / "ssh" / "authorized_keys"


def full_sync(files, **extra):
    registry, keys = files
    args = {
        "path": str(registry),
        "authorized_keys": str(keys),
        "range_start": 40000,
        "range_end": 40999,
        "prune": True,
        "spokes": [
            {"name": "lab-pc-1", "key": make_key("1"), "key_from": ["192.0.2.0/24"]},
            {"name": "lab-pc-2", "port": 40005, "forwards": [{"name": "rdp", "port": 3389, "host": "localhost"}],
             "key": make_key("2")},
            {"name": "lab-pc-3"},
        ],
    }
    args.update(extra)
    return args


def test_check_apply_check_apply(run_module, files):
    registry, keys = files
    rc, check = run_module(full_sync(files), check_mode=True, diff=True)
    assert rc == 0, check
    assert check["changed"] is True and check["authorized_keys_changed"] is True
    assert check["ports"] == {"lab-pc-1": {"ssh": 40000}, "lab-pc-2": {"rdp": 40001, "ssh": 40005},
                              "lab-pc-3": {"ssh": 40002}}
    assert check["added"] == ["lab-pc-1/ssh", "lab-pc-2/rdp", "lab-pc-2/ssh", "lab-pc-3/ssh"]
    assert len(check["keys_added"]) == 2 and check["keys_added"][0].startswith("lab-pc-1 SHA256:")
    assert check["spokes"]["lab-pc-1"]["key_from"] == ["192.0.2.0/24"]
    assert [d["before_header"] for d in check["diff"]] == [str(registry), str(keys)]
    assert check["diff"][0]["before"] == "" and '"version": 2' in check["diff"][0]["after"]
    assert 'from="192.0.2.0/24" ssh-ed25519' in check["diff"][1]["after"]
    assert not registry.parent.exists() and not keys.parent.exists()

    rc, apply = run_module(full_sync(files))
    assert rc == 0 and apply["changed"] is True
    assert {k: apply[k] for k in ("ports", "spokes", "added", "keys_added")} == \
        {k: check[k] for k in ("ports", "spokes", "added", "keys_added")}
    assert "diff" not in apply and "backup_file" not in apply
    assert apply["registry"] == str(registry)
    assert len([line for line in keys.read_text().splitlines() if not line.startswith("#")]) == 2

    for check_mode in (True, False):
        rc, again = run_module(full_sync(files), check_mode=check_mode, diff=True)
        assert rc == 0 and again["changed"] is False and again["authorized_keys_changed"] is False
        assert again["ports"] == apply["ports"]
        assert all(d["before"] == d["after"] for d in again["diff"])
        assert again["added"] == again["keys_added"] == again["keys_removed"] == []


def test_rotation_through_the_module(run_module, files):
    run_module(full_sync(files))
    registry, keys = files
    base = {"path": str(registry), "authorized_keys": str(keys)}
    rc, step1 = run_module(dict(base, trust=[{"name": "lab-pc-1", "key": make_key("1b")}]))
    assert rc == 0 and step1["changed"] and step1["spokes"]["lab-pc-1"]["keys"][1] == " ".join(
        make_key("1b").split()[:2])
    rc, step2 = run_module(dict(base, forget=[{"name": "lab-pc-1", "key": make_key("1")}]))
    assert rc == 0 and step2["keys_removed"][0].startswith("lab-pc-1 SHA256:")
    rc, last = run_module(dict(base, forget=[{"name": "lab-pc-1", "key": make_key("1b")}]), check_mode=True)
    assert rc == 1 and "forget would remove its last trusted key" in last["msg"]


@pytest.mark.parametrize(
    ("spoke", "expected"),
    [
        ({"name": "lab pc"}, "rename the host in the inventory"),
        ({"name": "a", "key_from": ['x",command="sh']}, "revtunnel_key_from"),
        ({"name": "a", "forwards": [{"name": "rdp", "port": 3389, "host": "h\nProxyCommand sh"}]},
         "revtunnel_forwards"),
        ({"name": "a", "port": 1}, "revtunnel_port"),
        ({"name": "a", "key": "ssh-ed25519 nope"}, "spoke a: the spoke's public key"),
    ],
)
def test_validation_fails_in_check_mode_and_names_the_variable(run_module, files, spoke, expected):
    rc, result = run_module(full_sync(files, spokes=[spoke]), check_mode=True)
    assert rc == 1 and result["failed"] is True
    assert expected in result["msg"] and "exception" not in result
    assert not files[0].parent.exists()


def test_string_ports_are_converted_by_the_argument_spec(run_module, files):
    spokes = [{"name": "a", "port": "40010", "forwards": [{"name": "web", "port": "8080"}]}]
    rc, result = run_module(full_sync(files, spokes=spokes), check_mode=True)
    assert rc == 0 and result["ports"] == {"a": {"ssh": 40010, "web": 40000}}


def test_os_error_carries_a_traceback(run_module, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    rc, result = run_module({"path": str(blocker / "ports.json"), "spokes": []}, _ansible_tracebacks_for=["error"])
    assert rc == 1 and "cannot update the spoke registry" in result["msg"]
    assert "Traceback" in result["exception"]


def _docs():
    with open(MODULE_PATH, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], "id", None) in {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    }


class _Captured(Exception):
    pass


def _argument_spec():
    """The module's argument_spec, taken by running main() with a stand-in AnsibleModule."""
    spec = importlib.util.spec_from_file_location("spoke_registry_under_test", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = {}

    def capture(argument_spec, **kwargs):
        seen.update(argument_spec=argument_spec, **kwargs)
        raise _Captured

    module.AnsibleModule = capture
    with pytest.raises(_Captured):
        module.main()
    return seen


def _compare(options, spec, where):
    assert set(options) == set(spec), where
    for name, doc in options.items():
        arg = spec[name]
        assert doc.get("type", "str") == arg["type"], f"{where}.{name} type"
        assert doc.get("elements") == arg.get("elements"), f"{where}.{name} elements"
        assert bool(doc.get("required")) == bool(arg.get("required")), f"{where}.{name} required"
        assert doc.get("default") == arg.get("default"), f"{where}.{name} default"
        if "suboptions" in doc or "options" in arg:
            _compare(doc["suboptions"], arg["options"], f"{where}.{name}")


def test_documentation_matches_the_argument_spec():
    docs = _docs()
    documentation = yaml.safe_load(docs["DOCUMENTATION"])
    yaml.safe_load(docs["EXAMPLES"])
    returned = yaml.safe_load(docs["RETURN"])
    seen = _argument_spec()
    assert seen["supports_check_mode"] is True
    assert documentation["module"] == "spoke_registry"
    # records_dir and hub are read by the action plugin (plugins/action/spoke_registry.py), and listed here too
    _compare(documentation["options"], seen["argument_spec"], "options")
    assert {"check_mode", "diff_mode", "safe_file_operations", "platform"} <= set(documentation["attributes"])
    # idempotent (and the platform's posix) come from the collection's own fragment
    assert "hubspoke.revtunnel._attributes" in documentation["extends_documentation_fragment"]
    assert {"ports", "spokes", "added", "released", "moved", "keys_added", "keys_removed",
            "authorized_keys_changed", "registry"} <= set(returned)
    # every example uses the FQCN
    examples = yaml.safe_load(docs["EXAMPLES"])
    assert all("hubspoke.revtunnel.spoke_registry" in task for task in examples)
