#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: unit_set
short_description: Install a service's files and run its systemd units, or stop them and remove the files
version_added: 1.2.0
description:
  - One service of the hub in one call, where an install, a C(stat), a C(systemd_service) task and a rescue that
    reads the journal took a block each.
  - With O(state=present), the O(directories) and O(files) are put in place as M(hubspoke.revtunnel.file_set)
    does. systemd re-reads its units when a unit file changed, or when an interrupted run left one unread. Each of
    O(units) is then enabled and started. With O(restart), a unit that was running restarts when a file changed;
    without it, notify a handler to restart it.
  - With O(state=absent), each of O(units) that is loaded is stopped and disabled while its file is still there,
    so its C(ExecStop) runs; then the O(files) are applied (list them with O(files[].state=absent)) and systemd
    re-reads its units.
  - A unit that systemd does not enable, start, restart or stop fails the call, with the last lines of its journal.
author:
  - hubspoke.revtunnel developers (@hubspoke)
options:
  units:
    description: The systemd units to run, or to stop, for example V(revtunnel-metrics.timer).
    type: list
    elements: str
    required: true
  state:
    description: V(present) runs the units; V(absent) stops and disables them before the files are applied.
    type: str
    choices: [present, absent]
    default: present
  restart:
    description: With O(state=present), restart a running unit when a file changed.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Reports what would change; systemd is only asked for the units' states.
  diff_mode:
    support: full
notes:
  - The contents travel in the module's arguments; do not pass secrets.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hubspoke.revtunnel._attributes
  - hubspoke.revtunnel._file_entries
"""

EXAMPLES = r"""
- name: Install and run the reaper
  hubspoke.revtunnel.unit_set:
    files:
      - path: /etc/systemd/system/revtunnel-reaper.service
        content: "{{ lookup('ansible.builtin.template', 'revtunnel-reaper.service.j2') }}"
    units: [revtunnel-reaper.service]
  notify: Restart the reaper

- name: Stop the metrics timer and remove its units
  hubspoke.revtunnel.unit_set:
    files:
      - {path: /etc/systemd/system/revtunnel-metrics.service, state: absent}
      - {path: /etc/systemd/system/revtunnel-metrics.timer, state: absent}
    units: [revtunnel-metrics.timer]
    state: absent
"""

RETURN = r"""
changed_paths:
  description: Files and directories written, mended or removed.
  returned: always
  type: list
  elements: str
reloaded:
  description: Whether systemd re-read its units.
  returned: always
  type: bool
units:
  description: Per unit, whether it was enabled, started, restarted or stopped.
  returned: always
  type: dict
  sample: {"revtunnel-reaper.service": {"enabled": false, "started": false, "restarted": false, "stopped": false}}
"""

import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import (  # noqa: E402
    DIRECTORY_OPTIONS,
    FILE_OPTIONS,
    FileSetError,
    prepare_entries,
)
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._unit_set import (  # noqa: E402
    UnitError,
    apply_units,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=DIRECTORY_OPTIONS),
            files=dict(type="list", elements="dict", default=[], options=FILE_OPTIONS),
            units=dict(type="list", elements="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            restart=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = apply_units(module.run_command,
                             prepare_entries(params["directories"], module.check_mode, content=False),
                             prepare_entries(params["files"], module.check_mode, content=True),
                             params["units"], state=params["state"], restart=params["restart"],
                             check_mode=module.check_mode, want_diff=module._diff)
    except (FileSetError, UnitError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot install {', '.join(params['units'])}: {exc}", exception=traceback.format_exc())
    output = dict(changed=result.changed, changed_paths=result.changed_paths, reloaded=result.reloaded,
                  units=result.units)
    if result.diffs:
        output["diff"] = result.diffs
    module.exit_json(**output)


if __name__ == "__main__":
    main()
