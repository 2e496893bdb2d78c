#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hub_host_key
short_description: Keep a hub's ed25519 host key in a protected copy on the controller, and restore it from there
version_added: 1.2.0
description:
  - Runs on the hub, through an action plugin on the controller. Spokes and operators pin the hub's ed25519
    host key and trust nothing else. A hub re-installed from nothing has a new key, which they all refuse.
  - With O(records_dir), the controller keeps the hub's host key pair in C(<records_dir>/<hub>.secret). The first
    run copies it from the hub. The file has mode C(0600) and is vault-encrypted when the run has a vault
    password. Every later run puts that pair back on the hub when the hub holds another one, so a rebuilt hub
    is trusted again without any spoke being contacted. A machine in the middle still has neither key and
    is still refused.
  - The pair is checked before it is put in place, because C(ssh-keygen -y) must derive the saved public key
    from the saved private key. Both files are written atomically, the private key with mode C(0600), owned by root.
  - Notify a reload of sshd when it reports a change.
  - Without O(records_dir), it only reads the hub's public host key.
author:
  - hubspoke.revtunnel developers (@hubspoke)
options:
  records_dir:
    description:
      - The controller directory of the hubs' records (C(revtunnel_hub_records_dir)). Action plugin option.
      - When unset or empty, no copy is kept and nothing is restored.
    type: path
  hub:
    description:
      - The name of the hub's records, by default the inventory name of the host. Action plugin option.
    type: str
  path:
    description: Path of the hub's ed25519 private host key; the public key is C(<path>.pub).
    type: path
    default: /etc/ssh/ssh_host_ed25519_key
  private_key:
    description:
      - The key pair to put in place, normally set by the action plugin from the controller's copy.
      - When unset, the module reads the pair on the hub.
    type: str
  public_key:
    description: The public half of O(private_key).
    type: str
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Reports whether the saved key would be restored; writes nothing on the hub or the controller.
  diff_mode:
    support: none
notes:
  - The private key never appears in the task's result or in its log.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - hubspoke.revtunnel._attributes
"""

EXAMPLES = r"""
- name: Keep the hub's host key on the controller and restore it on a rebuilt hub
  hubspoke.revtunnel.hub_host_key:
    records_dir: "{{ inventory_dir }}/.revtunnel"
  register: host_key
  notify: Reload sshd

- name: Pin it on the spokes
  ansible.builtin.debug:
    msg: "{{ host_key.public_key }}"
"""

RETURN = r"""
public_key:
  description: The hub's public host key, C(ssh-ed25519 base64).
  returned: success
  type: str
restored:
  description: Whether the saved key pair was put back on the hub (or would be, in check mode).
  returned: success
  type: bool
secret_written:
  description: Whether the controller's copy of the key pair was written in this run (the first run).
  returned: with O(records_dir)
  type: bool
secret_encrypted:
  description: Whether that copy was vault-encrypted.
  returned: with O(records_dir), when it was written
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._hub_host_key import (  # noqa: E402
    DEFAULT_PATH,
    HostKeyError,
    ensure_host_key,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default=DEFAULT_PATH),
            private_key=dict(type="str", no_log=True),
            public_key=dict(type="str", no_log=False),
            # read by the action plugin on the controller, which never passes them on
            records_dir=dict(type="path"),
            hub=dict(type="str"),
        ),
        required_together=[("private_key", "public_key")],
        supports_check_mode=True,
    )
    params = module.params

    def run(argv):
        return module.run_command(argv)

    try:
        result = ensure_host_key(run, path=params["path"], private_key=params["private_key"],
                                 public_key=params["public_key"], check_mode=module.check_mode,
                                 ssh_keygen=module.get_bin_path("ssh-keygen", required=True))
    except HostKeyError as exc:
        module.fail_json(msg=f"Hub host key {params['path']}: {exc}")
    output = dict(changed=result.changed, restored=result.restored, public_key=result.public_key)
    if result.private_key is not None:
        # read by the action plugin on the controller, never shown (no_log above is for the way in)
        output["private_key"] = result.private_key
    module.exit_json(**output)


if __name__ == "__main__":
    main()
