# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write docs/variables.md from the roles' meta/argument_specs.yml, the one place variables are described.

    python3 scripts/docs/variables.py          # rewrite docs/variables.md
    python3 scripts/docs/variables.py --check  # exit 1 when docs/variables.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "docs" / "variables.md"
ROLES = ("hub", "spoke", "client")


def _plain(text):
    """Ansible doc markup (C(x), V(x), O(x), I(x)) as Markdown, on one line."""
    if isinstance(text, list):
        text = " ".join(str(t) for t in text)
    text = " ".join(str(text).split())
    text = re.sub(r"\b[CVO]\(([^)]*)\)", r"`\1`", text)
    text = re.sub(r"\bI\(([^)]*)\)", r"*\1*", text)
    return text.replace("|", "\\|")


def _default(option):
    if "default" not in option:
        return "required" if option.get("required") else "unset"
    value = option["default"]
    return f"`{yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}`"


def render():
    lines = [
        "# Variables",
        "",
        "Generated from each role's `meta/argument_specs.yml` by `scripts/docs/variables.py`; do not edit by hand.",
        "The same text is shown by `ansible-doc -t role hubspoke.revtunnel.<role>`.",
        "",
    ]
    for role in ROLES:
        specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        lines += [f"## Role `hubspoke.revtunnel.{role}`", ""]
        for entry, spec in specs.items():
            lines.append(f"- entry point `{entry}`: {_plain(spec.get('short_description', ''))}")
        lines += ["", "| variable | type | default | description |", "|---|---|---|---|"]
        seen = {}
        for spec in specs.values():
            for name, option in (spec.get("options") or {}).items():
                seen.setdefault(name, option)
        for name in sorted(seen):
            option = seen[name]
            kind = option.get("type", "str")
            if kind == "list" and option.get("elements"):
                kind = f"list of {option['elements']}"
            lines.append(f"| `{name}` | {kind} | {_default(option)} | {_plain(option.get('description', ''))} |")
            for sub, suboption in (option.get("options") or {}).items():
                lines.append(f"| `{name}[].{sub}` | {suboption.get('type', 'str')} | {_default(suboption)} | "
                             f"{_plain(suboption.get('description', ''))} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the page is up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python3 scripts/docs/variables.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
