# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.hubspoke.revtunnel`` importable from this checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _collections_root():
    """The checkout's collections/ tree, or a throwaway one when the symlink is absent."""
    in_repo = REPO_ROOT / "collections"
    if (in_repo / "ansible_collections" / "hubspoke" / "revtunnel" / "plugins").is_dir():
        return in_repo
    # a fresh clone may lack the symlink: build the same layout in a temp dir
    scratch = Path(tempfile.mkdtemp(prefix="revtunnel-collections-"))
    namespace = scratch / "ansible_collections" / "hubspoke"
    namespace.mkdir(parents=True)
    os.symlink(REPO_ROOT, namespace / "revtunnel")
    return scratch


COLLECTIONS_ROOT = _collections_root()
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))


@pytest.fixture(scope="session")
def collections_root():
    return COLLECTIONS_ROOT


@pytest.fixture(scope="session")
def module_path():
    return REPO_ROOT / "plugins" / "modules" / "port_allocation.py"


@pytest.fixture
def module_runner(tmp_path, collections_root):
    """run(module_file, args, check_mode=False, diff=False, **internal) -> (exit code, parsed JSON).

    Runs the module file the way Ansible does: a subprocess fed its arguments as JSON in a file.
    """

    def _run(module_file, args, check_mode=False, diff=False, **internal):
        payload = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff, **internal)
        args_file = tmp_path / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
        # extend, not replace: ansible-test units puts its own collection root on PYTHONPATH
        python_path = os.pathsep.join(filter(None, [str(collections_root), os.environ.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, str(module_file), str(args_file)], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=python_path), timeout=60, check=False)
        assert proc.stdout.strip(), proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    return _run


def _zipapp(tmp_path_factory, kind):
    from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils._commands import bundle

    path = tmp_path_factory.mktemp(kind) / "revtunnel.pyz"
    path.write_bytes(bundle.build(bundle.HUB_COMMANDS if kind == "hub" else bundle.SPOKE_COMMANDS))
    return str(path)


@pytest.fixture(scope="session")
def hub_zipapp(tmp_path_factory):
    """The hub's command zipapp as the role installs it, built from this checkout."""
    return _zipapp(tmp_path_factory, "hub")


@pytest.fixture(scope="session")
def spoke_zipapp(tmp_path_factory):
    """The spoke's command zipapp as the role installs it, built from this checkout."""
    return _zipapp(tmp_path_factory, "spoke")
