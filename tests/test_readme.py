"""The README stays true to the roles: every documented variable exists, every variable is documented."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def role_variables():
    names = set()
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names.update(entry.get("options", {}))
    return names


def test_every_role_variable_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in role_variables() if name not in readme)
    assert not missing, f"document these in README.md's Variables table: {missing}"


def test_every_variable_named_in_the_readme_table_exists():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Variables", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(revtunnel_[a-z_]+)`", table))
    known = role_variables() | {name[:-1] for name in role_variables() if name.endswith("_")}
    # `_start` / `_end` style rows write the second name as a suffix of the first.
    unknown = sorted(n for n in named if n not in known and not any(k.startswith(n) for k in known))
    assert not unknown, f"README.md names variables no role has: {unknown}"
