"""The README's front page, followed as written: every ```sh block, in order, in one bash, in a fresh clone.

The clone is `git clone` of this checkout at HEAD (commit first), into a temporary directory. The blocks run
as one script (`set -e -o pipefail`), so a command that no longer works fails the test; the page's own
`make demo` starts the demo lab (any demo lab running before is removed first: the names are fixed), and the
test removes it at the end with `make demo-clean`, as the page says.

What the page leaves to the reader, the test does, and only that:
- ${EDITOR}: the "editor" describes the demo lab in the copied inventory: hosts.yml becomes the demo's
  lab/demo/hosts.yml, and group_vars/all.yml's revtunnel_hub_address the hub's container name;
- "your accounts": $USER is admin, the account the lab's hub and spokes give this machine's demo key;
- "Add `Include ...` at the top of ~/.ssh/config": the reader's home is a fresh directory whose .ssh/config
  has that line, and whose key (.ssh/id_ed25519) is the demo key that `make demo` makes for this machine.
  ssh takes its home from the password database, not from $HOME, so the script runs in a mount namespace
  (`unshare --mount`, root only) where that directory is mounted on the home directory: ssh, Ansible and
  the shell all see it, and the real one is never written to. Mounted into it from the real home: .cache
  (pip's cache is the machine's), and the Python of a venv linked with REVTUNNEL_README_TEST_VENV when it
  lives there (pyenv).
Nothing else runs in between.

REVTUNNEL_README_TEST_VENV=<venv>: link that venv into the clone instead of letting `make demo` build one
(quicker when trying the test again; the full run builds it, as a new user's would).
The whole transcript: .cache/test-readme.log.
"""

import os
import pwd
import re
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
from demolab import ROOT, plain_env, running_demo_containers

README = ROOT / "README.md"
LOG = ROOT / ".cache" / "test-readme.log"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[A-Za-z]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
MARK = "### README block"
EDITOR = """#!/usr/bin/env bash
# The reader's editor in the README test: describe the demo lab in the files the README opens.
set -euo pipefail
for file in "$@"; do
    case "$file" in
        */hosts.yml) cp lab/demo/hosts.yml "$file" ;;
        */group_vars/all.yml)
            grep -q '^revtunnel_hub_address: ' "$file"
            sed -i 's/^revtunnel_hub_address: .*/revtunnel_hub_address: revtunnel-demo-lab-hub/' "$file" ;;
        *) echo "README test editor: the README opens $file, which it does not know how to fill in" >&2; exit 1 ;;
    esac
done
"""


def shell_blocks(text):
    """The front page's shell blocks, in order, as written (dedented as a reader pastes them)."""
    return [textwrap.dedent(m.group("body")) for m in FENCE.finditer(text) if m.group("lang") in SHELL_LANGUAGES]


def between_marks(transcript, number):
    """What block `number` printed."""
    parts = transcript.split(f"{MARK} {number}\n", 1)
    assert len(parts) == 2, f"block {number} never ran:\n{transcript[-3000:]}"
    return parts[1].split(f"{MARK} {number + 1}\n", 1)[0]


def block_running(blocks, command):
    """The number of the one block that runs `command` (as the start of one of its lines)."""
    found = [n for n, block in enumerate(blocks) if re.search(rf"^{re.escape(command)}", block, re.M)]
    assert len(found) == 1, f"the README should run `{command}` in exactly one block, not {len(found)}"
    return found[0]


def test_the_shell_blocks_are_found():
    blocks = shell_blocks(README.read_text())
    assert len(blocks) >= 6 and "make demo" in blocks[0], blocks


@pytest.fixture
def clone(tmp_path):
    path = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, path], check=True)
    yield path
    # As the page says: `make demo-clean` removes the lab. Then the clone and its venv go.
    subprocess.run(["make", "demo-clean"], cwd=path, env=plain_env(path), capture_output=True, check=False)
    subprocess.run(["rm", "-rf", path], check=False)


def test_the_front_page_works_as_written_in_a_fresh_clone(clone, tmp_path):
    text = (clone / "README.md").read_text()
    blocks = shell_blocks(text)
    include = re.search(r"Add `(Include [^`]+)` at the top of `~/\.ssh/config`", text)
    assert include, "the README no longer says which Include line goes into ~/.ssh/config"
    assert "make demo-clean" in text

    # The lab's names are fixed: a demo lab that runs already is removed, so `make demo` starts from nothing.
    subprocess.run(["bash", "scripts/lab/demo.sh", "down"], cwd=clone, env=plain_env(clone), capture_output=True,
                   check=True)
    venv = os.environ.get("REVTUNNEL_README_TEST_VENV")
    if venv:
        (clone / ".venv").symlink_to(venv)

    home = tmp_path / "home"
    real_home = pwd.getpwuid(os.getuid()).pw_dir
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh").chmod(0o700)
    (home / ".ssh" / "config").write_text(include.group(1) + "\n")
    (home / ".ssh" / "config").chmod(0o600)
    (home / ".ssh" / "id_ed25519").symlink_to(clone / "lab" / "demo" / "ssh" / "id_ed25519")
    editor = tmp_path / "editor"
    editor.write_text(EDITOR)
    editor.chmod(0o755)
    # The fresh home on top of the real one, in this namespace only, with the real home's caches.
    keep = {".cache"}
    if venv:
        python_home = Path(os.path.realpath(Path(venv) / "bin" / "python3"))
        if python_home.is_relative_to(real_home):
            keep.add(python_home.relative_to(real_home).parts[0])
    mounts = []
    for name in sorted(keep):
        if os.path.isdir(os.path.join(real_home, name)):
            (home / name).mkdir(parents=True, exist_ok=True)
            mounts.append(f"mount --bind {shlex.quote(os.path.join(real_home, name))} {shlex.quote(str(home / name))}")
    # --rbind: the home with the mounts just made inside it.
    mounts.append(f"mount --rbind {shlex.quote(str(home))} {shlex.quote(real_home)}")

    script = ["set -e -o pipefail"]
    for number, block in enumerate(blocks):
        script += [f"echo '{MARK} {number}'", f"echo '$ '{shlex.quote(block.strip())}", block]
        # The demo itself never touches ~/.ssh.
        script += ["ls -A ~/.ssh"]
    script += [f"echo '{MARK} {len(blocks)}'"]
    env = plain_env(clone, HOME=real_home, USER="admin", EDITOR=str(editor))
    env.pop("VISUAL", None)
    inner = " && ".join([*mounts, f"cd {shlex.quote(str(clone))}", f"exec bash -c {shlex.quote(chr(10).join(script))}"])
    real_ssh = os.path.join(real_home, ".ssh")
    real_ssh_before = sorted(os.listdir(real_ssh)) if os.path.isdir(real_ssh) else None
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("w") as log:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", inner], cwd=clone,
                              env=env, stdout=log, stderr=subprocess.STDOUT, timeout=2400, check=False)
    transcript = LOG.read_text(errors="replace")
    assert (sorted(os.listdir(real_ssh)) if os.path.isdir(real_ssh) else None) == real_ssh_before
    assert proc.returncode == 0, f"a README command failed (full transcript: {LOG}):\n{transcript[-6000:]}"

    demo = between_marks(transcript, block_running(blocks, "make demo"))
    assert re.search(r"^this machine\$ ssh -F lab/demo/ssh/config lab-pc-1 hostname\s+->\s+lab-pc-1$", demo, re.M), demo
    assert "FAILED" not in demo

    # "the demo's inventory; a second run changes nothing"
    rerun = between_marks(transcript, block_running(blocks, "ansible-playbook site.yml -i lab/demo/hosts.yml"))
    site_recap = rerun.split("PLAY RECAP", 2)[1]
    recap = re.findall(r"^(lab-\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", site_recap, re.M)
    assert sorted(recap) == [("lab-hub", "0"), ("lab-pc-1", "0"), ("lab-pc-2", "0")], rerun
    assert re.search(r"^lab-pc-1$", rerun, re.M), rerun
    assert re.search(r"\(item=lab-pc-2 +ssh +10001 +up ", rerun), rerun
    # ~/.ssh held the two files the test put there until the reader's own step 3 wrote the client config.
    assert rerun.rstrip().endswith("config\nid_ed25519"), rerun[-500:]

    own_ssh = between_marks(transcript, block_running(blocks, "ssh lab-pc-1 hostname"))
    assert re.search(r"^lab-pc-1$", own_ssh, re.M), own_ssh
    assert (home / ".ssh" / "config.d" / "revtunnel-mylab.conf").is_file()
    assert running_demo_containers(), "the demo lab should still run: the page removes it only with make demo-clean"
