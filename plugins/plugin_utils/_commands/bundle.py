# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The zipapp a host runs its commands from, built on the controller from this collection's own modules.

The commands live in plugin_utils, not module_utils: they are programs a host runs, not module code (ansible-test
holds module code to AnsibleModule.run_command; the reaper follows journalctl through a pipe of its own). The
archive holds each module under its collection name (ansible_collections/hubspoke/revtunnel/plugins/...), found
through the import system and followed through its imports (the registry, /proc and probe code of module_utils
among them), so a host runs exactly the code the modules run, and Python puts the archive itself on sys.path.
It is built byte for byte the same from the same sources (sorted names, a fixed time stamp, stored
uncompressed), so an unchanged collection rewrites nothing and restarts nothing on a re-run.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import zipfile

PREFIX = "ansible_collections.hubspoke.revtunnel.plugins"
COMMANDS = PREFIX + ".plugin_utils._commands"
HUB_COMMANDS = ("status", "metrics", "reaper")
SPOKE_COMMANDS = ("watch",)
SHEBANG = b"#!/usr/bin/python3\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MAIN = (
    "# The zipapp's entry point: revtunnel.pyz COMMAND [ARGS] (hubspoke.revtunnel).\n"
    "import sys\n\n"
    f"from {COMMANDS} import cli\n\n"
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


def _namespace(name):
    """Whether NAME is the collection's prefix or one of its plugin folders (plugins.module_utils): packages the
    archive makes empty (build), never bundled from source."""
    return name.count(".") <= PREFIX.count(".") + 1


def _imports(tree):
    """The collection modules NAME imports: "from X import y" may name a module y of package X."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PREFIX + "."))
        elif (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX + ".")
              and not node.level):
            if not _namespace(node.module):
                found.add(node.module)
            if importlib.util.find_spec(node.module).submodule_search_locations is None:
                continue
            found.update(candidate for candidate in (f"{node.module}.{alias.name}" for alias in node.names)
                         if importlib.util.find_spec(candidate) is not None)
    return found


def modules(commands):
    """{module name: (source, is_package)} of the commands' modules, cli, and everything they import."""
    wanted = [f"{COMMANDS}.cli"] + [f"{COMMANDS}.{command}" for command in commands]
    found = {}
    while wanted:
        name = wanted.pop()
        if name in found:
            continue
        source, package = _source(name)
        found[name] = (source, package)
        wanted.extend(_imports(ast.parse(source)) - set(found))
        parent = name.rpartition(".")[0]
        if not _namespace(parent) and parent not in found:
            wanted.append(parent)
    return found


def build(commands):
    """The zipapp's bytes: a shebang, then the archive of every module the COMMANDS need."""
    files = {"__main__.py": _MAIN}
    bundled = modules(commands)
    for name in bundled:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            if _namespace(".".join(parts[:depth])):
                files["/".join(parts[:depth]) + "/__init__.py"] = ""
    for name, (source, package) in bundled.items():
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
