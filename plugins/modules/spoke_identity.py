#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spoke_identity
short_description: Check that a spoke resolves its hubs, then make its tunnel account, private home and key
version_added: 1.1.0
description:
  - Runs on the spoke, in one call what the C(spoke) role did in three (C(getent), M(ansible.builtin.user),
    M(hubspoke.revtunnel.spoke_key)).
  - First resolves every address in O(resolve) as the tunnel's ssh will (the host's resolver). When one
    does not resolve, the module fails naming each hub and address, and nothing on the host has changed.
  - Then makes O(user) a system account with a new group of its own name, O(home), O(shell) and O(comment)
    (C(useradd), which leaves a new account's password locked), or mends the home and shell of the
    existing account that carries O(comment) (C(usermod)).
  - It refuses, before any change, to take over root, an account at or above C(UID_MIN) of
    C(/etc/login.defs) (a person's account), any other account without O(comment) (a service's, such as
    C(postgres)), a group of that name without its account (it could grant rights, such as C(docker)),
    or an O(home) that is a symbolic link or an existing directory neither the account's own nor empty.
  - Then makes or mends O(home) with O(home_mode), owned by the account, and an ed25519 key in it
    (C(id_ed25519)) as M(hubspoke.revtunnel.spoke_key) does. The private key never leaves the host.
  - With O(state=absent) it removes the account and its home instead, under the same guards. An account that is
    not the tunnel's, or an O(home) that is not that account's own directory, fails the call before anything is
    removed; from a home whose account is gone already only the tunnel's key files are removed.
author:
  - hubspoke.revtunnel developers (@hubspoke)
options:
  user:
    description:
      - The local account that runs the tunnel; a plain name, never V(root).
    type: str
    required: true
  home:
    description:
      - Absolute path of the account's home, which holds the key; no C(.) or C(..) parts.
    type: path
    required: true
  home_mode:
    description:
      - Octal mode of O(home).
    type: str
    default: "0700"
  shell:
    description:
      - Login shell of the account.
    type: path
    default: /usr/sbin/nologin
  comment:
    description:
      - Comment (GECOS field) of the account; an existing account is only taken when it carries it.
    type: str
    default: hubspoke.revtunnel tunnel client
  key_comment:
    description:
      - Comment of a new key, for example C(revtunnel lab-pc-1).
    type: str
    default: ""
  resolve:
    description:
      - The hubs' addresses that must resolve on this host before anything is changed.
    type: list
    elements: dict
    default: []
    suboptions:
      hub:
        description:
          - The hub's inventory name, used in messages.
        type: str
        required: true
      address:
        description:
          - The address the tunnel dials (C(revtunnel_hub_address)).
        type: str
        required: true
  ssh_keygen:
    description:
      - Path of C(ssh-keygen).
    type: path
    default: /usr/bin/ssh-keygen
  state:
    description:
      - V(absent) removes the account (C(userdel)) and its home instead of making them; O(resolve) is not used.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    details:
      - The addresses are resolved in check mode too. An account or key that does not exist yet is reported
        as a change and not made; RV(public_key) is then empty.
  diff_mode:
    support: none
notes:
  - An existing key is never replaced. To renew it, see the C(rotate) entry point of the C(spoke) role.
seealso:
  - module: hubspoke.revtunnel.spoke_key
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hubspoke.revtunnel._attributes
"""

EXAMPLES = r"""
- name: Make the spoke's tunnel identity once its hub resolves
  hubspoke.revtunnel.spoke_identity:
    user: revtunnel
    home: /var/lib/revtunnel
    key_comment: revtunnel lab-pc-1
    resolve:
      - {hub: hub-1, address: hub.example.org}
  register: identity

- name: Show the key the hub will trust
  ansible.builtin.debug:
    msg: "{{ identity.public_key }}"
"""

RETURN = r"""
public_key:
  description: The public key, C(type base64) without comment; empty in check mode before the key exists.
  returned: always
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm1M5nVn8x1d5b7b0c7xJ0oQyqK2p6xH2Q9nq8w3Zb
key_created:
  description: Whether a new key was made in this run.
  returned: always
  type: bool
  sample: false
account_created:
  description: Whether the account was made in this run.
  returned: always
  type: bool
  sample: false
addresses:
  description: The addresses each hub of O(resolve) resolved to.
  returned: always
  type: dict
  sample: {"hub-1": ["192.0.2.10"]}
"""

import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import (  # noqa: E402
    FileSetError,
    parse_mode,
)
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_identity import (  # noqa: E402
    IdentityError,
    prepare_identity,
    remove_identity,
)
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_key import SpokeKeyError  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            user=dict(type="str", required=True),
            home=dict(type="path", required=True),
            home_mode=dict(type="str", default="0700"),
            shell=dict(type="path", default="/usr/sbin/nologin"),
            comment=dict(type="str", default="hubspoke.revtunnel tunnel client"),
            key_comment=dict(type="str", default=""),
            resolve=dict(type="list", elements="dict", default=[], options=dict(
                hub=dict(type="str", required=True),
                address=dict(type="str", required=True),
            )),
            ssh_keygen=dict(type="path", default="/usr/bin/ssh-keygen"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["user"] == "root":
        module.fail_json(msg="user: the tunnel must not run as root (revtunnel_spoke_user); name a plain account")
    if params["state"] == "absent":
        try:
            removed = remove_identity(params["user"], params["home"], params["comment"], module.run_command,
                                      check_mode=module.check_mode,
                                      userdel=module.get_bin_path("userdel") or "userdel")
        except IdentityError as exc:
            module.fail_json(msg=str(exc))
        except OSError as exc:
            module.fail_json(msg=f"cannot remove the tunnel identity in {params['home']}: {exc}",
                             exception=traceback.format_exc())
        module.exit_json(changed=removed, account_created=False, key_created=False, public_key="", addresses={})
    try:
        result = prepare_identity(params["user"], params["home"], params["shell"], params["comment"],
                                  module.run_command, key_comment=params["key_comment"],
                                  home_mode=parse_mode("home_mode", params["home_mode"]), resolve=params["resolve"],
                                  ssh_keygen=params["ssh_keygen"], check_mode=module.check_mode,
                                  useradd=module.get_bin_path("useradd") or "useradd",
                                  usermod=module.get_bin_path("usermod") or "usermod")
    except (IdentityError, SpokeKeyError, FileSetError) as exc:
        module.fail_json(msg=str(exc), changed=getattr(exc, "changed", False))
    except OSError as exc:
        module.fail_json(msg=f"cannot make the tunnel identity in {params['home']}: {exc}",
                         exception=traceback.format_exc())
    module.exit_json(changed=result.changed, account_created=result.account_created,
                     key_created=result.key_created, public_key=result.public_key or "",
                     addresses=result.addresses)


if __name__ == "__main__":
    main()
