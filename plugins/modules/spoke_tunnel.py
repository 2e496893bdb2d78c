#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spoke_tunnel
short_description: Put a spoke's tunnel files in place, retire hubs that left, start each tunnel, restart what changed
version_added: 1.2.0
description:
  - Runs on a spoke, once per run, for all its hubs. It owns what a change of the tunnel's files calls for,
    so no playbook logic decides a restart.
  - It writes the files every tunnel shares (O(directories), O(files)), such as the unit template and the
    command zipapp, in the manner of M(hubspoke.revtunnel.file_set).
  - Every hub that has files in O(conf_dir) but is not in O(hubs) or O(keep) is retired. That is a hub that left
    the inventory, or the hub of a shard the spoke moved away from. Its unit is stopped and disabled, and its
    pinned key and ssh configuration are removed.
  - systemd re-reads the units when the unit file changed, when a hub was retired, or when an interrupted run
    left the unit file unread (C(NeedDaemonReload)).
  - Then, hub by hub, it writes that hub's own files and enables and starts its unit. A unit that was
    already running is restarted when its unit file, its files or the re-read unit changed, or when
    O(restart) names the hub. The restart is deferred by O(restart_delay) seconds through a transient
    C(systemd-run) timer, so a run that reaches the spoke through this very tunnel gets its answer first.
  - A failure on one hub does not stop the others. The module fails at the end and names every hub that failed.
author:
  - hubspoke.revtunnel developers (@hubspoke)
options:
  directories:
    description: Directories to make or mend first, as in M(hubspoke.revtunnel.file_set).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      mode:
        description: Octal mode as a string.
        type: str
      owner:
        description: Account that owns the directory.
        type: str
      group:
        description: Group of the directory.
        type: str
  files:
    description: The files every tunnel shares, as in M(hubspoke.revtunnel.file_set).
    type: list
    elements: dict
    default: []
    suboptions: &file
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: What the file holds (UTF-8).
        type: str
      content_base64:
        description: What the file holds, base64-encoded.
        type: str
      mode:
        description: Octal mode as a string.
        type: str
        default: "0644"
      owner:
        description: Account that owns the file.
        type: str
      group:
        description: Group of the file.
        type: str
      validate:
        description: Command that checks a new content, with V(%s) in the place of the file.
        type: str
      state:
        description: V(absent) removes the file.
        type: str
        choices: [present, absent]
        default: present
  hubs:
    description: Every hub the spoke keeps a tunnel to, in the order they are handled.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The hub's inventory name, the instance of its unit.
        type: str
        required: true
      files:
        description: The hub's own files (its pinned host key, the tunnel's ssh configuration).
        type: list
        elements: dict
        default: []
        suboptions: *file
      port:
        description: The hub port of the spoke's ssh forward, returned in RV(waits) for the banner check.
        type: int
      timeout:
        description: Seconds the banner check waits for this hub, returned in RV(waits).
        type: float
      listener:
        description:
          - The listening socket inodes of the spoke's port on the hub, as the hub's registry read them. When
            this run restarts the hub's tunnel, RV(waits) returns them as the session the restart replaces.
        type: list
        elements: str
        default: []
  conf_dir:
    description: Directory of the hubs' files, C(<hub>.ssh_config) and C(<hub>.known_hosts).
    type: path
    default: /etc/revtunnel
  unit_file:
    description: Path of the unit template among O(files).
    type: path
    default: /etc/systemd/system/revtunnel@.service
  restart:
    description:
      - Hubs whose running tunnel restarts whatever changed, for example after a new key. A hub named here and
        not in O(hubs) is only restarted (or started when it is not running), its files left as they are.
    type: list
    elements: str
    default: []
  retire:
    description: Whether hubs not in O(hubs) or O(keep) are retired. V(false) for a call that only restarts.
    type: bool
    default: true
  keep:
    description:
      - Hubs that are still the spoke's (its hub group in the inventory) although this run does not configure
        them, because they are outside C(--limit), unreachable or failed. They are never retired; their files and
        units are left as they are.
    type: list
    elements: str
    default: []
  restart_delay:
    description: Seconds between the call and a restart it schedules.
    type: float
    default: 3
attributes:
  check_mode:
    support: full
    details:
      - Reports what would be written, retired, started and restarted; changes nothing.
  diff_mode:
    support: none
notes:
  - The contents travel in the module's arguments; do not pass secrets.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hubspoke.revtunnel._attributes
"""

EXAMPLES = r"""
- name: Keep a tunnel to each hub
  hubspoke.revtunnel.spoke_tunnel:
    files:
      - path: /etc/systemd/system/revtunnel@.service
        content: "{{ lookup('ansible.builtin.template', 'revtunnel@.service.j2') }}"
    hubs:
      - name: hub-a
        port: 10000
        timeout: 90
        files:
          - path: /etc/revtunnel/hub-a.ssh_config
            content: "{{ lookup('ansible.builtin.template', 'tunnel.ssh_config.j2') }}"
  register: tunnel
"""

RETURN = r"""
changed_paths:
  description: Files and directories written, mended or removed.
  returned: always
  type: list
  elements: str
retired:
  description: Hubs whose unit and files were removed because O(hubs) no longer lists them.
  returned: always
  type: list
  elements: str
reloaded:
  description: Whether systemd re-read its units.
  returned: always
  type: bool
hubs:
  description: Per hub, whether its unit was enabled, started, or its restart scheduled.
  returned: always
  type: dict
  sample: {"hub-a": {"unit": "revtunnel@hub-a.service", "enabled": false, "started": false, "restarted": true}}
waits:
  description: Per hub, what the batched banner check needs, C(port), C(timeout) and C(replaced_listener).
  returned: always
  type: dict
  sample: {"hub-a": {"port": 10000, "timeout": 90, "replaced_listener": ["123456"]}}
"""

import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import (  # noqa: E402
    DIRECTORY_OPTIONS,
    FILE_OPTIONS,
    FileSetError,
    prepare_entries,
)
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._rules import RuleError  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_tunnel import (  # noqa: E402
    TunnelError,
    apply_tunnels,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=DIRECTORY_OPTIONS),
            files=dict(type="list", elements="dict", default=[], options=FILE_OPTIONS),
            hubs=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                files=dict(type="list", elements="dict", default=[], options=FILE_OPTIONS),
                port=dict(type="int"),
                timeout=dict(type="float"),
                listener=dict(type="list", elements="str", default=[]),
            )),
            conf_dir=dict(type="path", default="/etc/revtunnel"),
            unit_file=dict(type="path", default="/etc/systemd/system/revtunnel@.service"),
            restart=dict(type="list", elements="str", default=[]),
            retire=dict(type="bool", default=True),
            keep=dict(type="list", elements="str", default=[]),
            restart_delay=dict(type="float", default=3),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        hubs = [dict(hub, files=prepare_entries(hub["files"], module.check_mode, content=True))
                for hub in params["hubs"]]
        result = apply_tunnels(
            module.run_command,
            prepare_entries(params["directories"], module.check_mode, content=False),
            prepare_entries(params["files"], module.check_mode, content=True),
            hubs, params["unit_file"], params["conf_dir"], restart_delay=params["restart_delay"],
            restart=params["restart"], check_mode=module.check_mode, retire=params["retire"],
            keep=params["keep"])
    except (FileSetError, TunnelError, RuleError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot set up the tunnels: {exc}", exception=traceback.format_exc())
    output = dict(changed=result.changed, changed_paths=result.changed_paths, retired=result.retired,
                  reloaded=result.reloaded, hubs=result.hubs, waits=result.waits)
    if result.errors:
        module.fail_json(msg="; ".join(result.errors), **output)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
