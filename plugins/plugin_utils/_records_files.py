# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's side of a hub's records: reading and writing the two files, the secret one through vault.

Used by the action plugins hub_host_key and spoke_registry, which run on the controller. The formats and
their checks are module_utils/_records.py; this file only reads, decrypts, encrypts and writes.
"""

from __future__ import annotations

import os

from ansible import constants as C
from ansible.parsing.vault import AnsibleVaultError, VaultLib, is_encrypted, match_encrypt_secret
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs, _records

DIR_MODE = 0o700
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def take_records_args(task_args, task_vars):
    """(the module's arguments, records directory or None, hub) of an action's task arguments: the action's own
    records_dir and hub are taken out; the hub is the inventory name unless given."""
    args = dict(task_args)
    directory = args.pop("records_dir", None) or None
    if directory:
        # The rules let it start with '~' (revtunnel_hub_records_dir: ~/labs/...); Python opens no such directory.
        directory = os.path.expanduser(directory)
    hub = args.pop("hub", None) or task_vars.get("inventory_hostname")
    return args, directory, hub


def _vault_secrets(loader):
    vault = getattr(loader, "_vault", None)
    return list(getattr(vault, "secrets", None) or [])


def read_secret(loader, directory, hub):
    """HUB's Secret, or None when its secret file does not exist; RecordsError when it cannot be used."""
    _public, path = _records.paths(directory, hub)
    raw = _fs.read_bytes(path)
    if raw is None:
        return None
    if is_encrypted(raw):
        secrets = _vault_secrets(loader)
        if not secrets:
            raise _records.RecordsError(
                f"{path} is vault-encrypted and this run has no vault password: give it (--ask-vault-pass, "
                "--vault-password-file or ANSIBLE_VAULT_PASSWORD_FILE). Nothing was changed")
        try:
            raw = VaultLib(secrets).decrypt(raw)
        except AnsibleVaultError as exc:
            raise _records.RecordsError(f"{path} cannot be decrypted with this run's vault password ({exc}). "
                                        "Nothing was changed") from None
    elif _vault_secrets(loader):
        # A run with a vault password writes the secret encrypted: a plain one was put here by hand, perhaps by
        # someone without the password who swapped in a host key and a signing key of their own.
        raise _records.RecordsError(
            f"{path} is not vault-encrypted, but this run has a vault password: a secret written by a run with a "
            f"vault password is encrypted, so this plain file did not come from such a run. If you put it there "
            f"yourself, check it and encrypt it (ansible-vault encrypt {path}). Nothing was changed")
    else:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            raise _records.RecordsError(
                f"{path} holds the hub's private host key and may be read by other accounts (mode {mode:04o}): "
                f"chmod 600 {path}, or encrypt it with ansible-vault. Nothing was changed")
    return _records.parse_secret(raw, path, hub)


def read_records(directory, hub, secret):
    """HUB's verified Records, or None when its public file does not exist."""
    path, secret_path = _records.paths(directory, hub)
    raw = _fs.read_bytes(path)
    if raw is None:
        return None
    if secret is None:
        raise _records.RecordsError(
            f"{path} cannot be checked: its signing key is in {secret_path}, which is missing. Nothing was changed. "
            "Restore both files from version control or your backup; or, while the hub itself still holds its "
            "registry and host key, move the .json aside and run site.yml to write both again from the hub")
    return _records.parse_records(raw, path, hub, secret.signing_key)


def _ensure_directory(directory):
    if not os.path.isdir(directory):
        os.makedirs(directory, DIR_MODE)
        os.chmod(directory, DIR_MODE)


def write_secret(loader, directory, hub, secret):
    """Write HUB's secret file: vault-encrypted when the run has a vault password, mode 0600 in any case.

    Returns True when it was encrypted.
    """
    _ensure_directory(directory)
    _public, path = _records.paths(directory, hub)
    data = _records.render_secret(hub, secret)
    secrets = _vault_secrets(loader)
    encrypted = False
    if secrets:
        vault_id, vault_secret = match_encrypt_secret(secrets, C.DEFAULT_VAULT_ENCRYPT_IDENTITY)
        data = VaultLib(secrets).encrypt(data, vault_secret, vault_id=vault_id)
        encrypted = True
    _fs.replace(path, data, SECRET_MODE)
    return encrypted


def write_records(directory, hub, data):
    """Write HUB's public records (already rendered and signed) when they differ; True when written."""
    _ensure_directory(directory)
    path, _secret = _records.paths(directory, hub)
    if _fs.read_bytes(path) == data:
        return False
    _fs.replace(path, data, PUBLIC_MODE)
    return True
