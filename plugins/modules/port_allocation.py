#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: port_allocation
short_description: Give each spoke stable, collision-free reverse tunnel ports on the hub
version_added: 1.0.0
description:
  - Runs on the hub. Keeps a registry of which hub loopback port each spoke's reverse
    tunnel (and each extra forward of a spoke, such as C(rdp)) listens on, and returns the map.
  - Ports are stable. An entry keeps its port across runs, across any reordering of O(spokes),
    and when other spokes come or go. A new entry takes the lowest free port in the range.
  - A port that something on the host already listens on (a TCP LISTEN socket in
    C(/proc/net/tcp) or C(/proc/net/tcp6), on any local address) is never handed out. The
    one exception is the port already registered to that same entry, which its own tunnel holds.
  - An entry's port moves only when O(spokes[].port) pins it elsewhere, or when its port is
    outside a new O(range_start)-O(range_end). Such moves are listed in RV(moved).
  - >-
    The registry is versioned JSON at O(path), shared with M(hubspoke.revtunnel.spoke_registry),
    which also records each spoke's trusted keys. This module writes version 2, for example
    C({"version": 2, "range": {"start": 10000, "end": 10999}, "updated": "2025-01-31T12:00:00Z",
    "spokes": {"lab-pc-1": {"ports": {"ssh": 10000}, "keys": [], "key_from": []}}}).
    It reads version 1 (C("ports": {"lab-pc-1": {"ssh": 10000}})) and migrates it on its first
    write without moving any port. It never changes the keys or C(from=) patterns a spoke holds,
    and never touches C(authorized_keys). C(updated) is the UTC time of the last write. See
    C(docs/registry-format.md) in the collection.
  - This module is a thin front end over the one registry backend of M(hubspoke.revtunnel.spoke_registry),
    its ports-only view, kept for existing playbooks and checks. New playbooks should use
    M(hubspoke.revtunnel.spoke_registry).
  - The registry is rewritten only when its ports or range change, or to migrate a version 1
    file. The write goes to a temporary file in the same directory, which is fsynced and then
    renamed over O(path), and the directory is fsynced. The previous version is kept as
    C(<path>.bak). Files are created with mode C(0640), and a missing parent directory with mode
    C(0750).
  - Runs that overlap are serialized by an exclusive C(flock) on C(<path>.lock), held across read,
    allocation and write, so two runs at once never give one port to two entries. Do not delete
    the lock file while a run may be going on.
  - Bad input fails before anything is written and leaves the registry untouched. A registry
    that is not valid JSON or has an unknown version is never overwritten.
author:
  - hubspoke.revtunnel developers (@hubspoke)
options:
  path:
    description:
      - Path of the registry file on the hub.
    type: path
    default: /var/lib/revtunnel/ports.json
  range_start:
    description:
      - Lowest port of the range that ports are allocated from. Must be between 1024 and 65535.
    type: int
    default: 10000
  range_end:
    description:
      - Highest port of the range, inclusive. Must be between O(range_start) and 65535.
    type: int
    default: 10999
  spokes:
    description:
      - The spokes to allocate ports for, usually one per host of the C(spokes) inventory group.
      - Every spoke gets an C(ssh) entry. Each name in O(spokes[].forwards) gets an entry of
        its own.
      - An empty list is allowed. With O(prune=true) it releases every entry.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the spoke, normally its inventory name. Must be unique. The same rule as
            M(hubspoke.revtunnel.spoke_registry) applies (one registry, one name rule), 1 to 64
            letters, digits, C(.), C(_) or C(-), starting with a letter or a digit.
        type: str
        required: true
      port:
        description:
          - Pin the port of this spoke's C(ssh) forward. The port must be inside the range.
          - The pin is honoured when the port is free. It is an error when the port is
            registered to another entry, pinned by another spoke, or used by another program on
            the host. The message names both sides.
          - When the spoke already has a different port, the entry moves to the pin.
        type: int
      forwards:
        description:
          - Names of the forwards this spoke needs. C(ssh) is always added.
          - A name is lowercase letters, digits, C(_) and C(-), and starts with a letter or a digit.
        type: list
        elements: str
        default: [ssh]
  prune:
    description:
      - When V(true), release every registry entry that O(spokes) does not list, that is a spoke
        that is missing, or a forward that a listed spoke no longer names. Released entries are
        reported in RV(released). A released spoke loses its trusted keys too.
      - When V(false), keep unlisted entries and their ports. They are returned in RV(ports).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Reports what would change. Nothing is created or written, not even the directory or
        the lock file.
  diff_mode:
    support: full
    details:
      - Shows the ports map before and after, one spoke per line.
  platform:
    platforms: posix
    details:
      - Linux only, because listening sockets are read from C(/proc/net/tcp) and C(/proc/net/tcp6).
  safe_file_operations:
    support: partial
    details:
      - The module writes atomically, but through its own temporary file, fsync, C(os.replace)
        and directory fsync rather than C(atomic_move). This way it controls the file mode and
        the C(.bak) copy.
      - Owner and group of an existing registry are kept. Its SELinux context is not copied.
  vault:
    support: none
notes:
  - Run it once per play on the hub, for example with C(run_once) and C(delegate_to), since the
    registry belongs to the hub.
  - The registry is keyed by spoke name. When you rename a spoke in the inventory, it gets a
    new port, and with O(prune=true) the old name's port is released.
seealso:
  - module: hubspoke.revtunnel.spoke_registry
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hubspoke.revtunnel._attributes
  - action_common_attributes.files
"""

EXAMPLES = r"""
- name: Build the spoke list from the inventory, with the optional per-spoke pin
  ansible.builtin.set_fact:
    __revtunnel_spokes: >-
      {{ __revtunnel_spokes | default([])
         + [{'name': item, 'port': hostvars[item]['revtunnel_port'] | default(none)}] }}
  loop: "{{ groups['spokes'] }}"

- name: Allocate tunnel ports for every spoke of the lab
  hubspoke.revtunnel.port_allocation:
    path: /var/lib/revtunnel/ports.json
    range_start: 10000
    range_end: 10999
    spokes: "{{ __revtunnel_spokes }}"
    prune: true
  register: __revtunnel_alloc

- name: Allocate ports with a pinned SSH port and an extra RDP forward
  hubspoke.revtunnel.port_allocation:
    spokes:
      - name: lab-pc-1
      - name: lab-pc-2
        port: 10005
        forwards: [ssh, rdp]
    prune: true
  register: __revtunnel_alloc
# __revtunnel_alloc.ports == {"lab-pc-1": {"ssh": 10000}, "lab-pc-2": {"rdp": 10001, "ssh": 10005}}

- name: Add one spoke without releasing the others
  hubspoke.revtunnel.port_allocation:
    spokes:
      - name: lab-pc-9
    prune: false

- name: Show the port of one spoke's SSH tunnel
  ansible.builtin.debug:
    msg: "lab-pc-2 listens on localhost:{{ __revtunnel_alloc.ports['lab-pc-2'].ssh }} on the hub"
"""

RETURN = r"""
ports:
  description:
    - The registry's map after the run, from spoke name to forward name to port.
    - With O(prune=false) it also holds entries that O(spokes) does not list.
  returned: success
  type: dict
  sample: {"lab-pc-1": {"ssh": 10000}, "lab-pc-2": {"rdp": 10001, "ssh": 10005}}
added:
  description: Entries that got a port in this run, as C(name/forward), sorted.
  returned: success
  type: list
  elements: str
  sample: ["lab-pc-2/rdp", "lab-pc-2/ssh"]
released:
  description: Entries removed from the registry by O(prune=true), as C(name/forward), sorted.
  returned: success
  type: list
  elements: str
  sample: ["lab-pc-7/ssh"]
moved:
  description:
    - Entries that stay registered under a new port, because of a new pin or because their
      port is outside the range. They are not listed in RV(added) or RV(released).
  returned: success
  type: list
  elements: dict
  contains:
    entry:
      description: The entry, as C(name/forward).
      type: str
    from:
      description: The port it had.
      type: int
    to:
      description: The port it has now.
      type: int
  sample: [{"entry": "lab-pc-2/ssh", "from": 10001, "to": 10005}]
registry:
  description: Path of the registry file.
  returned: success
  type: str
  sample: /var/lib/revtunnel/ports.json
backup_file:
  description: Path of the copy of the previous registry, when this run replaced an existing one.
  returned: changed and not in check mode, when a registry existed before
  type: str
  sample: /var/lib/revtunnel/ports.json.bak
"""

import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.document import format_ports  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.request import (  # noqa: E402
    DEFAULT_RANGE_END,
    DEFAULT_RANGE_START,
)
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.transaction import (  # noqa: E402
    DEFAULT_PATH,
    allocate_ports,
)
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._rules import RuleError  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default=DEFAULT_PATH),
            range_start=dict(type="int", default=DEFAULT_RANGE_START),
            range_end=dict(type="int", default=DEFAULT_RANGE_END),
            spokes=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    name=dict(type="str", required=True),
                    port=dict(type="int"),
                    forwards=dict(type="list", elements="str", default=["ssh"]),
                ),
            ),
            prune=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        result = allocate_ports(
            path=path,
            spokes=module.params["spokes"],
            range_start=module.params["range_start"],
            range_end=module.params["range_end"],
            prune=module.params["prune"],
            check_mode=module.check_mode,
        )
    except RuleError as exc:
        # input or registry problems: the message already says what to change
        module.fail_json(msg=str(exc), registry=path)
    except OSError as exc:
        module.fail_json(
            msg=f"cannot update the port registry {path}: {exc}",
            registry=path,
            exception=traceback.format_exc(),
        )

    output = dict(
        changed=result.changed,
        ports=result.ports,
        added=result.added,
        released=result.released,
        moved=result.moved,
        registry=result.path,
    )
    if result.backup_file:
        output["backup_file"] = result.backup_file
    if module._diff:
        output["diff"] = dict(
            before=format_ports(result.before) + "\n",
            after=format_ports(result.after) + "\n",
            before_header=f"{path} (ports)",
            after_header=f"{path} (ports)",
        )
    module.exit_json(**output)


if __name__ == "__main__":
    main()
