# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The zipapp a host runs its commands from, built on the controller from this collection's own modules.

The archive holds each module under its collection name (ansible_collections/hubspoke/revtunnel/plugins/
module_utils/...), found through the import system and followed through its imports, so a host runs exactly
the code the modules run, and Python puts the archive itself on sys.path. It is built byte for byte the same
from the same sources (sorted names, a fixed time stamp, stored uncompressed), so an unchanged collection
rewrites nothing and restarts nothing on a re-run.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import zipfile

PREFIX = "ansible_collections.hubspoke.revtunnel.plugins.module_utils"
HUB_COMMANDS = ("status", "metrics", "reaper")
SPOKE_COMMANDS = ("watch",)
SHEBANG = b"#!/usr/bin/python3\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MAIN = (
    "# The zipapp's entry point: revtunnel.pyz COMMAND [ARGS] (hubspoke.revtunnel).\n"
    "import sys\n\n"
    f"from {PREFIX}._commands import cli\n\n"
    "sys.exit(cli.main())\n"
)


def _source(name):
    """(source, is_package) of one module, through whichever loader imports it (Ansible's on a controller)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot find the module {name} to bundle")
    package = spec.submodule_search_locations is not None
    source = spec.loader.get_source(name)
    if source is None and spec.origin and spec.has_location:
        with open(spec.origin, encoding="utf-8") as handle:
            source = handle.read()
    if source is None and not package:
        raise ImportError(f"the loader of {name} gives no source to bundle")
    if isinstance(source, bytes):  # Ansible's collection loader gives bytes
        source = source.decode("utf-8")
    return source or "", package


def _imports(tree):
    """The collection modules NAME imports: "from X import y" may name a module y of package X."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PREFIX))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX) and not node.level:
            if node.module != PREFIX:  # module_utils itself is a namespace the archive makes (build)
                found.add(node.module)
            if importlib.util.find_spec(node.module).submodule_search_locations is None:
                continue
            found.update(candidate for candidate in (f"{node.module}.{alias.name}" for alias in node.names)
                         if importlib.util.find_spec(candidate) is not None)
    return found


def modules(commands):
    """{module name: (source, is_package)} of the commands' modules, cli, and everything they import."""
    wanted = [f"{PREFIX}._commands.cli"] + [f"{PREFIX}._commands.{command}" for command in commands]
    found = {}
    while wanted:
        name = wanted.pop()
        if name in found:
            continue
        source, package = _source(name)
        found[name] = (source, package)
        wanted.extend(_imports(ast.parse(source)) - set(found))
        parent = name.rpartition(".")[0]
        if parent.startswith(PREFIX + ".") and parent not in found:
            wanted.append(parent)
    return found


def build(commands):
    """The zipapp's bytes: a shebang, then the archive of every module the COMMANDS need."""
    files = {"__main__.py": _MAIN}
    parts = PREFIX.split(".")
    for depth in range(1, len(parts) + 1):
        files["/".join(parts[:depth]) + "/__init__.py"] = ""
    for name, (source, package) in modules(commands).items():
        path = name.replace(".", "/")
        files[path + "/__init__.py" if package else path + ".py"] = source
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            archive.writestr(info, files[path].encode("utf-8"))
    return SHEBANG + buffer.getvalue()
