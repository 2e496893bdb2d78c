#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: file_set
short_description: Put a set of small files and their directories in place in one call
version_added: 1.1.0
description:
  - Makes the O(directories) and writes the O(files) of one host in a single module call, where
    M(ansible.builtin.template) and M(ansible.builtin.copy) cost two calls per file on a run that changes
    nothing (a stat, then the attributes). The roles of this collection install their units, scripts and
    small configuration files with it; the contents are rendered on the controller, for example with the
    P(ansible.builtin.template#lookup) lookup.
  - Every new content is staged and validated first; only then do the files take their new contents, so a
    refused content leaves the whole set as it was.
  - A file that differs is written to a temporary file in its own directory, given its mode and owner there,
    synced to disk and renamed over the old one, so a reader sees the old file or the new one, never a part
    and never the new content with a wrong mode. A file whose content is right but whose mode or owner is
    not is mended in place.
  - Symbolic links and directories are never replaced by a file; such an entry fails and names its path.
    O(files[].state=absent) removes a file or a link, never what a link points to.
  - A path listed twice, or as both a directory and a file, fails the call before anything changes.
  - Where SELinux is enabled, each file written and each directory made gets the context the policy names
    for its path, as C(restorecon) would give it; a file's context is left as it is when only its mode or
    owner is mended.
author:
  - hubspoke.revtunnel developers (@hubspoke)
attributes:
  check_mode:
    support: full
    details:
      - Reports what would change and changes nothing.
  diff_mode:
    support: full
    details:
      - Shows each changed file before and after, except files over 128 KiB and files that are not UTF-8 text.
notes:
  - No backup is kept; use M(ansible.builtin.template) for a file that needs one, such as an sshd drop-in
    checked together with the rest of the configuration.
  - A new file gets the SELinux label that the system gives any file made in its directory.
  - The contents travel in the module's arguments; do not pass secrets.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hubspoke.revtunnel._attributes
  - hubspoke.revtunnel._file_entries
"""

EXAMPLES = r"""
- name: Install a unit, its script and the script's directory in one call
  hubspoke.revtunnel.file_set:
    directories:
      - path: /usr/local/libexec/example
        mode: "0755"
        owner: root
        group: root
    files:
      - path: /etc/systemd/system/example.service
        content: "{{ lookup('ansible.builtin.template', 'example.service.j2') }}"
        owner: root
        group: root
      - path: /usr/local/libexec/example/run
        content: "{{ lookup('ansible.builtin.file', 'run.sh', rstrip=false) }}"
        mode: "0755"
        owner: root
        group: root
      - path: /etc/systemd/system/example-old.timer
        state: absent
  register: installed

- name: Restart the service when its unit or script changed
  ansible.builtin.systemd_service:
    name: example.service
    state: restarted
    daemon_reload: true
  when: installed.changed_paths | select('match', '/etc/systemd/|/usr/local/libexec/example/') | list | length > 0
"""

RETURN = r"""
changed_paths:
  description: The directories and files that were made, written, mended or removed (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/systemd/system/example.service]
"""

import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import (  # noqa: E402
    DIRECTORY_OPTIONS,
    FILE_OPTIONS,
    FileSetError,
    apply,
    prepare_entries,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=DIRECTORY_OPTIONS),
            files=dict(type="list", elements="dict", default=[], options=FILE_OPTIONS),
        ),
        supports_check_mode=True,
    )
    try:
        directories = prepare_entries(module.params["directories"], module.check_mode, content=False)
        files = prepare_entries(module.params["files"], module.check_mode, content=True)
        changed, diffs = apply(directories, files, check_mode=module.check_mode, want_diff=module._diff,
                               run=module.run_command)
    except FileSetError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot put the files in place: {exc}", exception=traceback.format_exc())
    result = {"changed": bool(changed), "changed_paths": changed}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
