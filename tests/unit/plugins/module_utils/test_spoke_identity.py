# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The spoke's identity in one call: the host's real resolver and ssh-keygen; useradd and usermod watched.

Accounts are not made on the test machine: the account database is a dict here, and the lab scenarios check
the real account on real spokes (extensions/molecule/default/tests/test_spoke.py).
"""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_identity import (
    IdentityError,
    ensure_account,
    prepare_identity,
    resolve_hubs,
)


def real_run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class Accounts:
    """A passwd database that useradd and usermod (as watched commands) write to."""

    def __init__(self, **entries):
        self.entries = dict(entries)
        self.commands = []

    def lookup(self, name):
        return self.entries[name]

    def run(self, argv):
        if argv[0].endswith("ssh-keygen"):
            return real_run(argv)
        self.commands.append(argv)
        name = argv[-1]
        flags = {"--system", "--user-group", "--no-create-home"}
        words = [word for word in argv[1:-1] if word not in flags]
        options = dict(zip(words[0::2], words[1::2]))
        if argv[0] == "useradd":
            me = os.getuid()
            self.entries[name] = pwd.struct_passwd((name, "!", me, os.getgid(), options["--comment"],
                                                    options["--home-dir"], options["--shell"]))
        else:
            old = self.entries[name]
            self.entries[name] = pwd.struct_passwd((name, "!", old.pw_uid, old.pw_gid,
                                                    options.get("--comment", old.pw_gecos),
                                                    options.get("--home", old.pw_dir),
                                                    options.get("--shell", old.pw_shell)))
        return 0, "", ""


def test_every_hub_address_is_resolved_by_the_host_resolver():
    found = resolve_hubs([{"hub": "hub-1", "address": "localhost"}, {"hub": "hub-2", "address": "127.0.0.1"}])
    assert "127.0.0.1" in found["hub-1"] and found["hub-2"] == ["127.0.0.1"]


def test_every_address_that_does_not_resolve_is_named_in_one_error():
    with pytest.raises(IdentityError) as error:
        resolve_hubs([{"hub": "hub-1", "address": "no-such-hub.invalid"}, {"hub": "hub-2", "address": "localhost"},
                      {"hub": "hub-3", "address": "also-not.invalid"}])
    message = str(error.value)
    assert "hub hub-1: revtunnel_hub_address=no-such-hub.invalid" in message
    assert "hub hub-3: revtunnel_hub_address=also-not.invalid" in message and "hub-2" not in message
    assert "nothing was changed on this spoke" in message


def test_an_unresolvable_hub_leaves_the_host_untouched(tmp_path):
    accounts = Accounts()
    with pytest.raises(IdentityError):
        prepare_identity("revtunnel", str(tmp_path / "home"), "/usr/sbin/nologin", "tunnel", accounts.run,
                         resolve=[{"hub": "hub-1", "address": "no-such-hub.invalid"}], lookup=accounts.lookup)
    assert accounts.commands == [] and not (tmp_path / "home").exists()


def test_a_new_account_gets_its_own_group_no_home_from_useradd_and_a_private_home_with_a_key(tmp_path):
    accounts = Accounts()
    home = tmp_path / "lib" / "revtunnel"
    first = prepare_identity("revtunnel", str(home), "/usr/sbin/nologin", "tunnel client", accounts.run,
                             key_comment="revtunnel pc-1", lookup=accounts.lookup, group_exists=lambda name: False)
    assert accounts.commands == [["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(home),
                                  "--shell", "/usr/sbin/nologin", "--comment", "tunnel client", "revtunnel"]]
    assert first.changed and first.account_created and first.key_created
    assert first.public_key.startswith("ssh-ed25519 AAAA")
    assert home.stat().st_mode & 0o777 == 0o700 and (home / "id_ed25519").stat().st_mode & 0o777 == 0o600
    again = prepare_identity("revtunnel", str(home), "/usr/sbin/nologin", "tunnel client", accounts.run,
                             key_comment="revtunnel pc-1", lookup=accounts.lookup)
    assert not again.changed and again.public_key == first.public_key and len(accounts.commands) == 1


def test_an_existing_group_of_the_name_becomes_the_new_account_s_group():
    accounts = Accounts()
    changed, created = ensure_account("revtunnel", "/var/lib/revtunnel", "/usr/sbin/nologin", "c", accounts.run,
                                      lookup=accounts.lookup, group_exists=lambda name: True)
    assert changed and created and accounts.commands[0][2:4] == ["--gid", "revtunnel"]


def test_an_account_with_another_shell_home_or_comment_is_mended_in_one_usermod():
    old = pwd.struct_passwd(("revtunnel", "!", 999, 999, "old", "/home/revtunnel", "/bin/bash"))
    accounts = Accounts(revtunnel=old)
    changed, created = ensure_account("revtunnel", "/var/lib/revtunnel", "/usr/sbin/nologin", "new", accounts.run,
                                      lookup=accounts.lookup)
    assert changed and not created
    assert accounts.commands == [["usermod", "--home", "/var/lib/revtunnel", "--shell", "/usr/sbin/nologin",
                                  "--comment", "new", "revtunnel"]]
    assert ensure_account("revtunnel", "/var/lib/revtunnel", "/usr/sbin/nologin", "new", accounts.run,
                          lookup=accounts.lookup) == (False, False)


def test_check_mode_runs_no_command_and_makes_no_home(tmp_path):
    accounts = Accounts()
    result = prepare_identity("revtunnel", str(tmp_path / "home"), "/usr/sbin/nologin", "c", accounts.run,
                              check_mode=True, lookup=accounts.lookup,
                              resolve=[{"hub": "hub-1", "address": "localhost"}])
    assert result.changed and result.account_created and result.public_key is None
    assert accounts.commands == [] and not (tmp_path / "home").exists()


@pytest.mark.parametrize("name", ["-o", "Root", "a b", "x" * 33, ""])
def test_a_name_that_could_read_as_an_option_is_refused_before_any_command(name):
    accounts = Accounts()
    with pytest.raises(IdentityError, match="revtunnel_spoke_user"):
        ensure_account(name, "/var/lib/revtunnel", "/usr/sbin/nologin", "c", accounts.run, lookup=accounts.lookup)
    assert accounts.commands == []


def test_a_failing_useradd_is_reported_with_its_error():
    def refuse(argv):
        return 9, "", "useradd: cannot lock /etc/passwd"

    with pytest.raises(IdentityError, match="cannot lock /etc/passwd"):
        ensure_account("revtunnel", "/var/lib/revtunnel", "/usr/sbin/nologin", "c", refuse, lookup=Accounts().lookup)
