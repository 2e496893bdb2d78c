"""Linters, ansible-test, the docs and changelog checks and the collection build, run as tests so `make test`
ends in one pytest summary."""

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The venv's tools first, whatever PATH pytest was started with (scripts/ansible-test.sh finds ansible-test on it).
TOOLS_ENV = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")

# Development files that must stay out of the Galaxy tarball (galaxy.yml's build_ignore).
DEV_FILES = ("Makefile", "ansible.cfg", "execution-environment.yml", "pyproject.toml", "requirements.txt",
             "requirements-dev.txt", ".ansible-lint", ".yamllint", ".gitignore")
DEV_DIRS = ("extensions/", "tests/", "bench/", "scripts/", ".ci/", ".config/", ".venv/", "collections/", "molecule/")


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


def test_ansible_test_sanity_is_clean():
    # Ignore entries (tests/sanity/ignore-X.Y.txt) only where a test cannot apply; reasons in tests/sanity/README.md.
    run("bash", ROOT / "scripts/ansible-test.sh", "sanity", env=TOOLS_ENV)


def test_ansible_test_units_pass():
    run("bash", ROOT / "scripts/ansible-test.sh", "units", env=TOOLS_ENV)


def test_ansible_test_integration_port_allocation_passes_on_localhost():
    run("bash", ROOT / "scripts/ansible-test.sh", "integration", "port_allocation", env=TOOLS_ENV)


def test_antsibull_docs_lint_is_clean():
    run(BIN / "antsibull-docs", "lint-collection-docs", "--plugin-docs", ".", env=TOOLS_ENV)


def test_changelog_fragments_lint_clean():
    run(BIN / "antsibull-changelog", "lint", env=TOOLS_ENV)


def test_changelog_fragments_use_rst_not_ansible_doc_markup():
    # Fragments are reStructuredText: C(x) would reach CHANGELOG.md as "C\(x\)"; write ``x``.
    bad = [f"{path.name}: {m.group(0)}" for path in sorted((ROOT / "changelogs/fragments").glob("*.y*ml"))
           for m in re.finditer(r"\b[CVOIBL]\([^)]*\)", path.read_text())]
    assert not bad, f"use ``literal`` instead of ansible-doc markup in changelog fragments: {bad}"


def test_requires_ansible_matches_the_oldest_tested_ansible_core():
    runtime = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())
    tested = sorted(tuple(map(int, re.match(r"ignore-(\d+)\.(\d+)\.txt", p.name).groups()))
                    for p in (ROOT / "tests/sanity").glob("ignore-*.txt"))
    assert runtime["requires_ansible"] == ">={}.{}.0".format(*tested[0]), (runtime, tested)


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


def test_built_collection_carries_no_lab_test_or_dev_files(built_collection):
    with tarfile.open(built_collection) as tar:
        names = tar.getnames()
    for wanted in ("roles/hub/tasks/main.yml", "plugins/modules/port_allocation.py", "LICENSE", "README.md",
                   "meta/runtime.yml", "meta/execution-environment.yml", "meta/ee-bindep.txt",
                   "changelogs/changelog.yaml", "inventory.example/hosts.yml"):
        assert wanted in names, wanted
    assert not [n for n in names if n in DEV_FILES or n.startswith(DEV_DIRS) or "__pycache__" in n]


def test_license_is_the_gpl_3_text():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE") and "Version 3, 29 June 2007" in text
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert galaxy["license"] == ["GPL-3.0-or-later"]


def test_execution_environment_lists_only_the_controllers_needs(built_collection, tmp_path):
    dest = tmp_path / "collections"
    run(BIN / "ansible-galaxy", "collection", "install", "--offline", "--force", "-p", dest, built_collection)
    deps = yaml.safe_load(run(BIN / "ansible-builder", "introspect", dest).stdout.split("\n", 1)[1])
    assert deps["python"] == []
    system = [line.split("  #")[0] for line in deps["system"]]
    assert system == ["openssh-client [platform:dpkg]", "openssh-clients [platform:rpm]"]


def test_galaxy_importer_accepts_the_tarball(built_collection, tmp_path):
    # What Galaxy runs on upload, with ansible-lint on; its ansible-test step needs containers, which
    # test_ansible_test_sanity_is_clean covers.
    config = tmp_path / "galaxy-importer.cfg"
    config.write_text("[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = True\n")
    env = dict(TOOLS_ENV, GALAXY_IMPORTER_CONFIG=str(config))
    proc = run(BIN / "python", "-m", "galaxy_importer.main", built_collection, cwd=tmp_path, env=env)
    log = proc.stdout + proc.stderr
    assert "Importer processing completed successfully" in log, log
    assert not re.findall(r"^(?:WARNING|ERROR).*", log, re.M), log
