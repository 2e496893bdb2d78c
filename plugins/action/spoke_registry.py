# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of hubspoke.revtunnel.spoke_registry: the hub's records on the controller, read and kept.

Before the module runs on the hub, the controller's copy of the hub's records (records_dir) is read and
verified; its entries go to the module as ``restore``, which fills what the registry lacks (a rebuilt hub).
After a run that is not in check mode, the copy is written again from what the registry holds now. With
``hub_paths``, the registry's, the keys' and the records' paths are the hub's own (filter hub_paths).
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.hubspoke.revtunnel.plugins.filter.hub_paths import hub_paths
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _records
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import document
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils import _records_files

MODULE = "hubspoke.revtunnel.spoke_registry"


def with_hub_paths(task_args, hostvars):
    """The task's arguments; with hub_paths, the paths it does not give are those of the hub it names (hub_paths)."""
    args = dict(task_args)
    try:
        wanted = boolean(args.pop("hub_paths", False), strict=True)
    except TypeError:
        raise AnsibleActionFail(f"hub_paths must be true or false, got {task_args.get('hub_paths')!r}") from None
    if not wanted:
        return args
    # The hub's own paths from its inventory, for a playbook that runs without the hub role (a key rotation).
    hub = args.get("hub")
    if not hub or hub not in hostvars:
        raise AnsibleActionFail(f"hub_paths needs hub, the inventory name of a hub, got {hub!r}")
    paths = hub_paths(hostvars[hub])
    for option, key in (("path", "registry"), ("authorized_keys", "authorized_keys"),
                        ("authorized_keys_group", "user"), ("records_dir", "records_dir")):
        args.setdefault(option, paths[key])
    return args


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        task_args = with_hub_paths(self._task.args, task_vars.get("hostvars", {}))
        args, directory, hub = _records_files.take_records_args(task_args, task_vars)
        secret = records = None
        if directory:
            try:
                secret = _records_files.read_secret(self._loader, directory, hub)
                records = _records_files.read_records(directory, hub, secret)
            except _records.RecordsError as exc:
                raise AnsibleActionFail(f"Hub {hub}: {exc}") from None
            if records is not None and "restore" not in args:
                args["restore"] = records.spokes
        outcome = self._execute_module(MODULE, module_args=args, task_vars=task_vars)
        result.update(outcome)
        if not directory or outcome.get("failed") or self._task.check_mode:
            return result
        result["records_written"] = False
        if secret is None:
            # The hub's host key step writes the secret first; a run limited by tags may skip it.
            result.setdefault("warnings", []).append(
                f"Hub {hub}: no controller copy of its records was written, because its secret file (the host key "
                f"and the signing key) is not in {directory} yet; run the whole hub role once")
            return result
        same = records is not None and records.spokes == outcome["spokes"] and records.range == outcome["range"] \
            and records.host_key == secret.public_key
        if same:
            return result
        data = _records.render_records(hub, secret.public_key, outcome["spokes"], outcome["range"],
                                       document.utc_timestamp(), secret.signing_key)
        try:
            result["records_written"] = _records_files.write_records(directory, hub, data)
        except OSError as exc:
            raise AnsibleActionFail(f"Hub {hub}: cannot write its records in {directory}: {exc}") from None
        result["changed"] = result.get("changed", False) or result["records_written"]
        return result
