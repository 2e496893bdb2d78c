#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spoke_key
short_description: Make a spoke's tunnel key on the spoke itself and return its public key
version_added: 1.0.0
description:
  - Runs on the spoke. Makes an ed25519 key with C(ssh-keygen) at O(path) unless one is there; the
    private key never leaves the host.
  - Keeps the private key mode C(0600) and its C(.pub) file mode C(0644), both owned by O(owner) and
    O(group), and rewrites the C(.pub) file when it does not match the private key.
  - Returns the public key derived from the private key, so the hub trusts the key the tunnel really uses.
author:
  - hubspoke.revtunnel developers (@hubspoke)
options:
  path:
    description:
      - Path of the private key; the public key is C(<path>.pub).
    type: path
    required: true
  owner:
    description:
      - Account that owns both files (the account that runs the tunnel).
    type: str
  group:
    description:
      - Group of both files.
    type: str
  comment:
    description:
      - Comment of a new key, for example C(revtunnel lab-pc-1).
    type: str
    default: ""
  directory_mode:
    description:
      - When set, the key's directory (the tunnel account's private home) is made, with missing parents, or
        mended first, with this octal mode, for example V(0700), owned by O(owner) and O(group).
    type: str
    version_added: 1.1.0
  next:
    description:
      - A key rotation's steps, for the C(rotate) entry point of the C(spoke) role.
      - V(make) also makes the next key at C(<path>.next), or keeps the one a rotation cut short left there (a hub
        may already trust it), and returns it as RV(next_public_key).
      - V(promote) puts C(<path>.next) and its C(.pub) in place of the current key, when they are there, and
        returns the key in place then.
    type: str
    choices: [make, promote]
    version_added: 1.2.0
  ssh_keygen:
    description:
      - Path of C(ssh-keygen).
    type: path
    default: /usr/bin/ssh-keygen
attributes:
  check_mode:
    support: full
    details:
      - A key that does not exist yet is reported as a change and not made; RV(public_key) is then empty.
  diff_mode:
    support: none
notes:
  - An existing key is never replaced. To renew it, see the C(rotate) entry point of the C(spoke) role.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hubspoke.revtunnel._attributes
"""

EXAMPLES = r"""
- name: Make the tunnel key on the spoke itself
  hubspoke.revtunnel.spoke_key:
    path: /var/lib/revtunnel/id_ed25519
    owner: revtunnel
    group: revtunnel
    directory_mode: "0700"
    comment: revtunnel lab-pc-1
  register: tunnel_key

- name: Show the key the hub will trust
  ansible.builtin.debug:
    msg: "{{ tunnel_key.public_key }}"
"""

RETURN = r"""
public_key:
  description: The public key, C(type base64) without comment; empty in check mode before the key exists.
  returned: always
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm1M5nVn8x1d5b7b0c7xJ0oQyqK2p6xH2Q9nq8w3Zb
next_public_key:
  description: With O(next=make), the next key's public key, C(type base64) without comment.
  returned: with O(next=make)
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq0pcyR6u8wS3pfTt0m2zGk2y7m6w2dL3rQ4m9l5nXb
created:
  description: Whether a new key was made in this run.
  returned: always
  type: bool
  sample: false
"""

import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import (  # noqa: E402
    FileSetError,
    account_ids,
    parse_mode,
)
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_key import (  # noqa: E402
    SpokeKeyError,
    ensure_key,
    make_next,
    promote_next,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            owner=dict(type="str"),
            group=dict(type="str"),
            comment=dict(type="str", default=""),
            directory_mode=dict(type="str"),
            next=dict(type="str", choices=["make", "promote"]),
            ssh_keygen=dict(type="path", default="/usr/bin/ssh-keygen"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        uid, gid = account_ids(params["owner"], params["group"], module.check_mode)
        options = dict(ssh_keygen=params["ssh_keygen"], comment=params["comment"], uid=uid, gid=gid,
                       check_mode=module.check_mode,
                       directory_mode=parse_mode("directory_mode", params["directory_mode"]))
        extra = {}
        if params["next"] == "make":
            result, upcoming = make_next(params["path"], module.run_command, **options)
            result.changed = result.changed or upcoming.changed
            extra["next_public_key"] = upcoming.public_key or ""
        elif params["next"] == "promote":
            result = promote_next(params["path"], module.run_command, **options)
        else:
            result = ensure_key(params["path"], module.run_command, **options)
    except (SpokeKeyError, FileSetError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot keep the tunnel key {params['path']}: {exc}", exception=traceback.format_exc())
    module.exit_json(changed=result.changed, created=result.created, public_key=result.public_key or "", **extra)


if __name__ == "__main__":
    main()
