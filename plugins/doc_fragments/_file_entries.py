# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The directories and files that file_set and unit_set take (one argument spec: _file_set's options)."""

    DOCUMENTATION = r"""
options:
  directories:
    description:
      - Directories to make or mend before any file is written, in this order; missing parents are made
          with mode V(0755), like C(mkdir -p).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      mode:
        description:
          - Octal mode as a string, for example V(0755). When not set, a new directory gets V(0755) and an
            existing one keeps its mode.
        type: str
      owner:
        description: Account that owns the directory; not changed when not set.
        type: str
      group:
        description: Group of the directory; not changed when not set.
        type: str
  files:
    description:
      - Files to write or remove, in this order. Their directories must exist or be listed in O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description:
          - What the file holds, byte for byte (UTF-8). A file that is present needs O(files[].content) or
            O(files[].content_base64).
        type: str
      content_base64:
        description:
          - What the file holds, base64-encoded, for a binary file such as a zipapp.
          - Mutually exclusive with O(files[].content).
        type: str
        version_added: 1.2.0
      mode:
        description: Octal mode as a string, for example V(0644) or V(0755).
        type: str
        default: "0644"
      owner:
        description:
          - Account that owns the file. When not set, a rewritten file keeps its owner and a new file belongs
            to the account that runs the module.
        type: str
      group:
        description:
          - Group of the file. When not set, a rewritten file keeps its group and a new file gets the group
            of the account that runs the module.
        type: str
      validate:
        description:
          - Command that checks a new content before the file takes it, with V(%s) in the place of the
            temporary file that holds it, for example V(/usr/bin/ssh -G -F %s somehost). Runs only when the
            content changes, not in check mode.
          - When it exits non-zero, no file of the set is written and the module fails with its output.
        type: str
      state:
        description: V(absent) removes the file when it is there.
        type: str
        choices: [present, absent]
        default: present
"""
