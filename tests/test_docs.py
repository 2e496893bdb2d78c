"""The front page stays short and true: its links resolve, and the variables page matches the roles."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("roles/*/README.md"))]


def test_the_front_page_is_short():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 8192, f"README.md is {size} bytes: move details to docs/ and link them"


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_variables_page_is_generated_from_the_argument_specs():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs" / "variables.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
