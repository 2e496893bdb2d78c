#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sshd_dropin
short_description: Put an sshd drop-in in place only as sshd accepts it, and reload sshd when it changed
version_added: 1.2.0
description:
  - Writes one file of C(sshd_config.d) in a single call, where a template, an C(sshd -t) command, a reload and a
    rescue that puts the old file back took four tasks.
  - A new content is checked alone with C(sshd -t -f) before it takes the file's place, atomically (a temporary
    file beside it, renamed over it, mode C(0644), owned by root). Then the whole configuration is checked with
    C(sshd -t). When sshd refuses it, the previous drop-in is put back (a new one is removed) and the module fails
    with sshd's own words; sshd is not reloaded.
  - The content is either O(content), rendered on the controller, or O(settings), which the module writes itself
    after checking that each keyword and value is one plain word, so no value can add a line or an option.
  - With O(if_supported), an sshd that does not know a keyword of O(settings) (C(sshd -T) does not print it, as
    with an older OpenSSH) is left as it is.
  - O(state=absent) removes the drop-in.
  - When the content changed or the drop-in was removed, O(service) is reloaded, if given. Leave it out to
    notify a handler instead.
author:
  - hubspoke.revtunnel developers (@hubspoke)
options:
  path:
    description: Absolute path of the drop-in, for example C(/etc/ssh/sshd_config.d/10-revtunnel.conf).
    type: path
    required: true
  content:
    description:
      - What the drop-in holds, for example rendered with the P(ansible.builtin.template#lookup) lookup.
      - Mutually exclusive with O(settings).
    type: str
  settings:
    description:
      - Keywords and their values, written as C(Keyword value) lines. A list value is joined with commas, as
        sshd's address lists are.
      - Each keyword is letters only; each value is a word or a number with no space, quote, comma, C(#) or
        backslash.
    type: dict
  comment:
    description: Comment lines at the top of a drop-in written from O(settings), for example C(ansible_managed).
    type: str
    default: ""
  if_supported:
    description:
      - With O(settings), change nothing when sshd does not know one of their keywords; RV(supported) is then
        V(false).
    type: bool
    default: false
  state:
    description: V(absent) removes the drop-in.
    type: str
    choices: [present, absent]
    default: present
  sshd:
    description: Path of sshd, which checks the configuration.
    type: path
    default: /usr/sbin/sshd
  service:
    description:
      - sshd's unit, reloaded when the drop-in's content changed or it was removed, for example V(ssh) or
        V(sshd). A reload keeps every session. When not set, nothing is reloaded.
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the drop-in would change; sshd checks nothing and nothing is reloaded.
  diff_mode:
    support: full
  safe_file_operations:
    support: full
    description: The drop-in is written to a temporary file beside it and renamed over it.
notes:
  - sshd reads only the drop-ins its C(sshd_config) includes (Debian and EL include C(/etc/ssh/sshd_config.d/*.conf)).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hubspoke.revtunnel._attributes
"""

EXAMPLES = r"""
- name: Restrict the tunnel account in sshd and keep sshd valid
  hubspoke.revtunnel.sshd_dropin:
    path: /etc/ssh/sshd_config.d/10-revtunnel.conf
    content: "{{ lookup('ansible.builtin.template', 'sshd_revtunnel.conf.j2') }}"
  notify: Reload sshd

- name: Exempt loopback from sshd's penalties where sshd has them
  hubspoke.revtunnel.sshd_dropin:
    path: /etc/ssh/sshd_config.d/10-revtunnel-spoke.conf
    settings:
      PerSourcePenaltyExemptList: [127.0.0.1/32, "::1/128"]
    if_supported: true
    service: ssh
"""

RETURN = r"""
supported:
  description: Whether sshd knows every keyword of O(settings); always V(true) without O(if_supported).
  returned: always
  type: bool
  sample: true
reloaded:
  description: Whether O(service) was reloaded.
  returned: always
  type: bool
  sample: false
"""

import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._sshd_dropin import (  # noqa: E402
    DropinError,
    apply,
    render,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            content=dict(type="str"),
            settings=dict(type="dict"),
            comment=dict(type="str", default=""),
            if_supported=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            sshd=dict(type="path", default="/usr/sbin/sshd"),
            service=dict(type="str"),
        ),
        mutually_exclusive=[("content", "settings")],
        required_if=[("state", "present", ("content", "settings"), True)],
        supports_check_mode=True,
    )
    params = module.params
    try:
        content = params["content"] if params["settings"] is None else render(params["settings"], params["comment"])
        result = apply(params["path"], module.run_command, content=(content or "").encode("utf-8"),
                       state=params["state"], sshd=params["sshd"], service=params["service"],
                       require_keywords=list(params["settings"] or ()) if params["if_supported"] else (),
                       check_mode=module.check_mode, want_diff=module._diff)
    except DropinError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot keep the sshd drop-in {params['path']}: {exc}", exception=traceback.format_exc())
    output = dict(changed=result.changed, supported=result.supported, reloaded=result.reloaded)
    if result.diffs:
        output["diff"] = result.diffs[0]
    module.exit_json(**output)


if __name__ == "__main__":
    main()
