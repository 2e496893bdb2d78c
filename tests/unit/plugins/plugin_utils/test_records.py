# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's copy of a hub's records: its format, its signature, its files and how it meets the registry.

The keys are real: ssh-keygen makes them, as the lab's hubs do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import struct
import subprocess

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultSecret, is_encrypted
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs, _records
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.transaction import sync_registry
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._rules import RuleError
from ansible_collections.hubspoke.revtunnel.plugins.plugin_utils import _records_files


def spoke_key(seed):
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + hashlib.sha256(seed.encode()).digest()
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


@pytest.fixture(scope="module")
def host_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostkey") / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    public = " ".join(path.with_suffix(".pub").read_text().split()[:2])
    return path.read_text(), public


@pytest.fixture
def secret(host_key):
    return _records.Secret(host_key[0], host_key[1], _records.new_signing_key())


SPOKES = {
    "lab-pc-1": {"ports": {"ssh": 10000}, "keys": [spoke_key("1")], "key_from": ["192.0.2.0/24"]},
    "lab-pc-2": {"ports": {"rdp": 10002, "ssh": 10001}, "keys": [spoke_key("2")], "key_from": []},
}
RANGE = {"start": 10000, "end": 10999}


def write_pair(directory, secret, spokes=None, loader=None):
    _records_files.write_secret(loader or DataLoader(), str(directory), "lab-hub", secret)
    data = _records.render_records("lab-hub", secret.public_key, SPOKES if spokes is None else spokes, RANGE,
                                   "2026-12-03T00:00:00Z", secret.signing_key)
    _records_files.write_records(str(directory), "lab-hub", data)


def read_pair(directory, loader=None):
    found = _records_files.read_secret(loader or DataLoader(), str(directory), "lab-hub")
    return found, _records_files.read_records(str(directory), "lab-hub", found)


def test_a_written_copy_reads_back_one_spoke_per_line_with_private_modes(tmp_path, secret):
    records = tmp_path / ".revtunnel"
    write_pair(records, secret)
    found, copy = read_pair(records)
    assert found == secret
    assert copy.spokes == SPOKES and copy.range == RANGE and copy.host_key == secret.public_key
    text = (records / "lab-hub.json").read_text()
    assert all(sum(f'"{name}":' in line for line in text.splitlines()) == 1 for name in SPOKES)
    assert stat.S_IMODE(os.stat(records).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(records / "lab-hub.secret").st_mode) == 0o600
    assert not is_encrypted((records / "lab-hub.secret").read_bytes())


def test_an_unchanged_copy_is_not_written_again(tmp_path, secret):
    write_pair(tmp_path, secret)
    data = (tmp_path / "lab-hub.json").read_bytes()
    before = os.stat(tmp_path / "lab-hub.json").st_ino
    assert _records_files.write_records(str(tmp_path), "lab-hub", data) is False
    assert os.stat(tmp_path / "lab-hub.json").st_ino == before


def test_the_copy_is_written_atomically(tmp_path, secret, monkeypatch):
    write_pair(tmp_path, secret)
    before = (tmp_path / "lab-hub.json").read_bytes()

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_fs.os, "replace", no_space)
    changed = _records.render_records("lab-hub", secret.public_key, {}, RANGE, "later", secret.signing_key)
    with pytest.raises(OSError, match="No space left"):
        _records_files.write_records(str(tmp_path), "lab-hub", changed)
    assert (tmp_path / "lab-hub.json").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["lab-hub.json", "lab-hub.secret"]


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t.replace('"ssh": 10000', '"ssh": 10009'), "does not match its signature"),
    (lambda t: t.replace(spoke_key("2"), spoke_key("intruder")), "does not match its signature"),
    (lambda t: t.replace('"hub": "lab-hub"', '"hub": "other-hub"'), "holds the records of hub 'other-hub'"),
    (lambda t: t[: len(t) // 2], "is not valid JSON"),
    (lambda t: t.replace('"version": 1', '"version": 9'), "of version 1"),
])
def test_an_edited_or_damaged_copy_is_refused_with_what_to_do(tmp_path, secret, edit, expected):
    write_pair(tmp_path, secret)
    path = tmp_path / "lab-hub.json"
    path.write_text(edit(path.read_text()))
    with pytest.raises(_records.RecordsError) as err:
        read_pair(tmp_path)
    assert expected in str(err.value) and "Nothing was changed" in str(err.value)


def test_a_resigned_copy_with_a_broken_rule_is_refused(tmp_path, secret):
    # Whoever holds the signing key still cannot give one port to two spokes, or restore a bad key.
    spokes = {"a": {"ports": {"ssh": 10000}, "keys": [], "key_from": []},
              "b": {"ports": {"ssh": 10000}, "keys": [], "key_from": []}}
    write_pair(tmp_path, secret, spokes)
    with pytest.raises(_records.RecordsError, match="gives port 10000 to both a/ssh and b"):
        read_pair(tmp_path)


def test_a_copy_without_its_secret_cannot_be_checked(tmp_path, secret):
    write_pair(tmp_path, secret)
    os.unlink(tmp_path / "lab-hub.secret")
    with pytest.raises(_records.RecordsError, match="cannot be checked: its signing key is in"):
        read_pair(tmp_path)


def test_a_plain_secret_others_may_read_is_refused(tmp_path, secret):
    write_pair(tmp_path, secret)
    os.chmod(tmp_path / "lab-hub.secret", 0o644)
    with pytest.raises(_records.RecordsError, match="may be read by other accounts .* chmod 600"):
        read_pair(tmp_path)


def test_with_a_vault_password_the_secret_is_encrypted_and_needs_it_back(tmp_path, secret):
    vaulted = DataLoader()
    vaulted.set_vault_secrets([("default", VaultSecret(b"lab vault password"))])
    write_pair(tmp_path, secret, loader=vaulted)
    raw = (tmp_path / "lab-hub.secret").read_bytes()
    assert is_encrypted(raw) and b"PRIVATE KEY" not in raw
    assert read_pair(tmp_path, loader=vaulted)[0] == secret
    with pytest.raises(_records.RecordsError, match="vault-encrypted and this run has no vault password"):
        read_pair(tmp_path)
    wrong = DataLoader()
    wrong.set_vault_secrets([("default", VaultSecret(b"another password"))])
    with pytest.raises(_records.RecordsError, match="cannot be decrypted"):
        read_pair(tmp_path, loader=wrong)


def test_a_vaulted_secret_swapped_for_a_plain_one_is_refused_when_the_run_has_a_vault_password(
        tmp_path, secret, host_key):
    # The downgrade: a repository writer without the vault password replaces the encrypted secret by a plain one of
    # their own (their host key pair and signing key) and re-signs the .json with a key of their own for a spoke.
    # A checkout under umask 077, or the operator following "chmod 600", made it pass, and the hub got that host key.
    vaulted = DataLoader()
    vaulted.set_vault_secrets([("default", VaultSecret(b"lab vault password"))])
    write_pair(tmp_path, secret, loader=vaulted)
    theirs = _records.Secret(host_key[0], host_key[1], b"attacker's signing key, 32 bytes")
    (tmp_path / "lab-hub.secret").unlink()
    write_pair(tmp_path, theirs, {**SPOKES, "lab-pc-1": {**SPOKES["lab-pc-1"], "keys": [spoke_key("intruder")]}})
    assert stat.S_IMODE(os.stat(tmp_path / "lab-hub.secret").st_mode) == 0o600
    with pytest.raises(_records.RecordsError, match="not vault-encrypted, but this run has a vault password"):
        read_pair(tmp_path, loader=vaulted)


def test_a_secret_that_is_not_a_key_pair_is_refused(tmp_path, secret):
    write_pair(tmp_path, secret)
    path = tmp_path / "lab-hub.secret"
    data = json.loads(path.read_text())
    data["host_key"]["private"] = "not a key"
    path.write_text(json.dumps(data))
    with pytest.raises(_records.RecordsError, match="not an OpenSSH private key block"):
        read_pair(tmp_path)


# --- the copy meets the registry ----------------------------------------------------------------------------

def registry_files(tmp_path):
    return str(tmp_path / "hub" / "ports.json"), str(tmp_path / "hub" / "authorized_keys")


def test_a_rebuilt_hub_gets_every_spoke_back_with_its_ports_and_keys(tmp_path):
    # key_from is the inventory's (revtunnel_key_from) on every run, as site.yml gives it; ports and keys come back.
    registry, keys = registry_files(tmp_path)
    result = sync_registry(registry, spokes=[{"name": "lab-pc-1", "key_from": ["192.0.2.0/24"]},
                                             {"name": "lab-pc-2", "forwards": ["rdp"]}],
                           authorized_keys=keys, restore=SPOKES, require_keys=["lab-pc-1", "lab-pc-2"],
                           listening_ports=set(), prune=True)
    assert result.spokes == SPOKES and result.restored == ["lab-pc-1", "lab-pc-2"]
    with open(keys, encoding="utf-8") as handle:
        text = handle.read()
    line = f'permitlisten="localhost:10000",permitopen="127.0.0.1:1",from="192.0.2.0/24" {spoke_key("1")} lab-pc-1'
    assert line in text


def test_where_copy_and_registry_disagree_the_registry_wins(tmp_path):
    # The registry is what sshd enforces now, written under its lock, perhaps by a run the copy never saw.
    registry, keys = registry_files(tmp_path)
    sync_registry(registry, spokes=[{"name": "lab-pc-1", "key": spoke_key("rotated")}], authorized_keys=keys,
                  listening_ports=set())
    result = sync_registry(registry, spokes=[{"name": "lab-pc-1"}, {"name": "lab-pc-2", "forwards": ["rdp"]}],
                           authorized_keys=keys, restore=SPOKES, listening_ports=set(), prune=True)
    assert result.spokes["lab-pc-1"]["keys"] == [spoke_key("rotated")]  # the registry's key, not the copy's
    assert result.restored == ["lab-pc-2"]
    # lab-pc-2's ssh port 10001 is free, but its rdp port 10002 too: both come back as the copy has them
    assert result.spokes["lab-pc-2"]["ports"] == {"rdp": 10002, "ssh": 10001}


def test_a_port_the_registry_gives_another_spoke_is_not_restored(tmp_path):
    registry, keys = registry_files(tmp_path)
    sync_registry(registry, spokes=[{"name": "newcomer", "port": 10001, "key": spoke_key("n")}],
                  authorized_keys=keys, listening_ports=set())
    result = sync_registry(registry, spokes=[{"name": "newcomer", "port": 10001}, {"name": "lab-pc-2"}],
                           authorized_keys=keys, restore={"lab-pc-2": SPOKES["lab-pc-2"]}, listening_ports=set())
    assert result.spokes["newcomer"]["ports"] == {"ssh": 10001}
    assert result.spokes["lab-pc-2"]["ports"]["ssh"] != 10001
    assert result.spokes["lab-pc-2"]["keys"] == [spoke_key("2")]


def test_a_run_that_would_lock_out_an_unreached_spoke_fails_and_changes_nothing(tmp_path):
    registry, keys = registry_files(tmp_path)
    with pytest.raises(RuleError) as err:
        sync_registry(registry, spokes=[{"name": "lab-pc-1"}, {"name": "lab-pc-2"}], authorized_keys=keys,
                      require_keys=["lab-pc-1", "lab-pc-2"], listening_ports=set())
    message = str(err.value)
    assert "spoke(s) lab-pc-1, lab-pc-2 would be left without a trusted key on this hub" in message
    assert "Nothing was changed" in message and "revtunnel_hub_records_dir" in message
    assert not os.path.exists(registry) and not os.path.exists(keys)
    # A spoke the run reached (it hands its key over) is no lockout; one the copy knows is none either.
    sync_registry(registry, spokes=[{"name": "lab-pc-1", "key": spoke_key("1")}, {"name": "lab-pc-2"}],
                  authorized_keys=keys, require_keys=["lab-pc-2"], restore={"lab-pc-2": SPOKES["lab-pc-2"]},
                  listening_ports=set())


def test_a_records_directory_under_the_home_directory_is_the_home_directorys(tmp_path, monkeypatch):
    # '~' passes the rules (revtunnel_hub_records_dir: ~/labs/...) but made a directory named '~' in the cwd.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args, directory, hub = _records_files.take_records_args({"records_dir": "~/labs/.revtunnel", "path": "/x"},
                                                            {"inventory_hostname": "lab-hub"})
    assert directory == str(tmp_path / "home" / "labs" / ".revtunnel") and args == {"path": "/x"} and hub == "lab-hub"
