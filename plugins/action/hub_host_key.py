# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of hubspoke.revtunnel.hub_host_key: the controller's side of the hub's host key copy."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _records
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils import _records_files

MODULE = "hubspoke.revtunnel.hub_host_key"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("records_dir", "hub", "path"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args, directory, hub = _records_files.take_records_args(self._task.args, task_vars)
        secret = None
        try:
            if directory:
                secret = _records_files.read_secret(self._loader, directory, hub)
        except _records.RecordsError as exc:
            raise AnsibleActionFail(f"Hub {hub}: {exc}") from None
        if secret is not None:
            args.update(private_key=secret.private_key, public_key=secret.public_key)
        outcome = self._execute_module(MODULE, module_args=args, task_vars=task_vars)
        private_key = outcome.pop("private_key", None)
        result.update(outcome)
        if outcome.get("failed") or not directory:
            return result
        result["secret_written"] = False
        if secret is None and not self._task.check_mode:
            if private_key is None:
                raise AnsibleActionFail(f"Hub {hub}: the module returned no host key to keep")
            try:
                _records.private_key(private_key, "the hub's host key")
                fresh = _records.Secret(private_key, outcome["public_key"], _records.new_signing_key())
                result["secret_encrypted"] = _records_files.write_secret(self._loader, directory, hub, fresh)
            except (_records.RecordsError, OSError) as exc:
                raise AnsibleActionFail(f"Hub {hub}: cannot keep its host key on the controller: {exc}") from None
            result["secret_written"] = True
            result["changed"] = True
            if not result["secret_encrypted"]:
                path = _records.paths(directory, hub)[1]
                result.setdefault("warnings", []).append(
                    f"{path} holds hub {hub}'s private host key, protected by mode 0600 only: encrypt it with "
                    f"ansible-vault (ansible-vault encrypt {path}), or run with a vault password, which "
                    "encrypts it when it is written")
        return result
