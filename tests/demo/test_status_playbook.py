"""playbooks/status.yml against the demo lab: it writes only where asked, and its table reads the same anywhere.

Run as a user would: from a directory outside the repository (no ansible.cfg, the callback's json result format)
and from the repository root (ansible.cfg: yaml result format).
"""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from demolab import ROOT, plain_env

PLAYBOOK = ROOT / "playbooks" / "status.yml"
ROW = re.compile(r"^ok: \[lab-hub\] => \(item=(.*)\)$", re.M)
RECAP = re.compile(r"^lab-hub\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", re.M)


class Run:
    """One run of status.yml: its process, and the hub's changed and failed counts from the recap."""

    def __init__(self, proc):
        recap = RECAP.search(proc.stdout)
        assert recap, proc.stdout + proc.stderr
        self.proc, self.stdout = proc, proc.stdout
        self.changed, self.failed = int(recap.group(1)), int(recap.group(2))

    @property
    def ok(self):
        return self.proc.returncode == 0 and self.failed == 0


def status(inventory, cwd, *extra, config=None):
    """Run status.yml from cwd with a plain environment; config: the ansible.cfg to read, or none at all."""
    env = plain_env(cwd, **({"ANSIBLE_CONFIG": str(config)} if config else {}))
    return Run(subprocess.run([Path(sys.executable).parent / "ansible-playbook", "-i", inventory, PLAYBOOK, *extra],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False))


def table(stdout):
    """The table's lines with the latencies masked (they change from run to run)."""
    return [re.sub(r"\b\d+(\.\d+)? ms\b", "N ms", row) for row in ROW.findall(stdout)]


def listing(directory):
    return sorted(p.name for p in Path(directory).iterdir())


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def outside(tmp_path):
    """An empty directory outside the repository to run from."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return cwd


def test_by_default_it_writes_nothing_and_shows_a_table(demo_lab, outside):
    playbooks_before = listing(ROOT / "playbooks")
    run = status(demo_lab, outside)
    assert run.ok and run.changed == 0, run.stdout + run.proc.stderr
    assert listing(outside) == [] and listing(ROOT / "playbooks") == playbooks_before
    rows = table(run.stdout)
    assert rows[0].split() == ["SPOKE", "FORWARD", "PORT", "STATE", "LATENCY", "DETAIL"], rows
    assert [row.split()[:4] for row in rows[1:]] == [["lab-pc-1", "ssh", "10000", "up"],
                                                     ["lab-pc-2", "ssh", "10001", "up"]], rows
    assert "\\n" not in run.stdout


def test_the_table_reads_the_same_from_the_repository_root(demo_lab, outside):
    elsewhere = status(demo_lab, outside)
    at_root = status(demo_lab, ROOT, config=ROOT / "ansible.cfg")
    assert at_root.ok and at_root.changed == 0, at_root.stdout + at_root.proc.stderr
    assert table(at_root.stdout) == table(elsewhere.stdout), (at_root.stdout, elsewhere.stdout)
    assert len(table(at_root.stdout)) == 3


def test_json_on_request_is_one_line_of_json_and_no_table(demo_lab, outside):
    run = status(demo_lab, outside, "-e", "revtunnel_status_json=true")
    assert run.ok and run.changed == 0, run.stdout + run.proc.stderr
    lines = ROW.findall(run.stdout)
    assert len(lines) == 1, run.stdout
    document = json.loads(lines[0])
    assert [(row["spoke"], row["up"]) for row in document["lab-hub"]] == [("lab-pc-1", True), ("lab-pc-2", True)]
    assert listing(outside) == []


def test_a_new_file_is_written_relative_to_the_working_directory(demo_lab, outside):
    run = status(demo_lab, outside, "-e", "revtunnel_status_file=status.json")
    assert run.ok, run.stdout + run.proc.stderr
    written = outside / "status.json"
    assert run.changed == 1 and listing(outside) == ["status.json"], run.stdout
    assert mode(written) == 0o644
    document = json.loads(written.read_text())
    assert sorted(row["spoke"] for row in document["lab-hub"]) == ["lab-pc-1", "lab-pc-2"]


def test_check_mode_writes_no_file(demo_lab, outside):
    run = status(demo_lab, outside, "--check", "-e", "revtunnel_status_file=status.json")
    assert run.ok, run.stdout + run.proc.stderr
    assert listing(outside) == []


def test_an_existing_file_is_refused_and_left_as_it_was(demo_lab, outside):
    precious = outside / "notes.txt"
    precious.write_text("not a status file\n")
    precious.chmod(0o600)
    before = os.stat(precious)
    run = status(demo_lab, outside, "-e", f"revtunnel_status_file={precious}")
    assert run.proc.returncode != 0 and run.failed == 1 and run.changed == 0, run.stdout
    assert f"{precious} exists" in run.stdout and "revtunnel_status_overwrite=true" in run.stdout, run.stdout
    assert precious.read_text() == "not a status file\n" and mode(precious) == 0o600
    assert os.stat(precious).st_mtime_ns == before.st_mtime_ns


def test_a_file_written_by_an_earlier_run_is_refused_too(demo_lab, outside):
    first = status(demo_lab, outside, "-e", "revtunnel_status_file=status.json")
    assert first.ok, first.stdout
    content = (outside / "status.json").read_text()
    again = status(demo_lab, outside, "-e", "revtunnel_status_file=status.json")
    assert again.proc.returncode != 0 and again.changed == 0, again.stdout
    assert (outside / "status.json").read_text() == content


def test_overwrite_replaces_the_content_says_so_and_keeps_the_mode(demo_lab, outside):
    target = outside / "status.json"
    target.write_text("old\n")
    target.chmod(0o600)
    run = status(demo_lab, outside, "-e", f"revtunnel_status_file={target}", "-e", "revtunnel_status_overwrite=true")
    assert run.ok and run.changed == 1, run.stdout + run.proc.stderr
    assert f"Replaced the content of {target} (revtunnel_status_overwrite=true); its mode 0600 is kept" in run.stdout
    assert mode(target) == 0o600
    assert "lab-hub" in json.loads(target.read_text())


@pytest.mark.parametrize("kind", ["link", "directory"])
def test_anything_but_a_regular_file_is_refused_even_with_overwrite(demo_lab, outside, kind):
    target = outside / "status.json"
    victim = outside / "victim"
    victim.write_text("keep me\n")
    if kind == "link":
        target.symlink_to(victim)
    else:
        target.mkdir()
    run = status(demo_lab, outside, "-e", f"revtunnel_status_file={target}", "-e", "revtunnel_status_overwrite=true")
    assert run.proc.returncode != 0 and run.changed == 0, run.stdout
    assert "is not a regular file" in run.stdout, run.stdout
    assert victim.read_text() == "keep me\n"
    assert target.is_symlink() if kind == "link" else listing(target) == []
