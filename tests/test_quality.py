"""Linters and the collection build, run as tests so `make test` ends in one pytest summary."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*cmd, cwd=ROOT, env=None):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_ruff_is_clean():
    run(BIN / "ruff", "check", ".")


def test_yamllint_is_clean():
    run(BIN / "yamllint", "-s", ".")


def test_ansible_lint_production_profile_is_clean():
    run(BIN / "ansible-lint", "--profile", "production", "--offline")


@pytest.fixture(scope="module")
def built_collection(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run(BIN / "ansible-galaxy", "collection", "build", "--output-path", out, ".")
    tarballs = list(out.glob("hubspoke-revtunnel-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return tarballs[0]


def test_collection_installs_and_documents_its_module(built_collection, tmp_path):
    dest = tmp_path / "collections"
    # --force: the checkout itself is on the configured collections path with the same version.
    run(BIN / "ansible-galaxy", "collection", "install", "--offline", "--force", "-p", dest, built_collection)
    assert (dest / "ansible_collections/hubspoke/revtunnel/plugins/modules/port_allocation.py").is_file()
    # An empty config, so only the installed copy (not this checkout) is on the collections path.
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"))
    doc = run(BIN / "ansible-doc", "hubspoke.revtunnel.port_allocation", cwd=tmp_path, env=env).stdout
    assert "range_start" in doc and "ATTRIBUTES" in doc.upper()
    syntax = run(BIN / "ansible-playbook", "--syntax-check", "-i", "localhost,", "hubspoke.revtunnel.site",
                 cwd=tmp_path, env=env)
    assert str(dest / "ansible_collections/hubspoke/revtunnel/playbooks/site.yml") in syntax.stdout


def test_built_collection_carries_no_lab_or_test_files(built_collection):
    import tarfile

    with tarfile.open(built_collection) as tar:
        names = tar.getnames()
    assert "roles/hub/tasks/main.yml" in names and "plugins/modules/port_allocation.py" in names
    assert not [n for n in names if n.startswith(("extensions/", "molecule/", "tests/", ".venv/", "collections/"))]
