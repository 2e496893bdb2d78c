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
    remove_identity,
    resolve_hubs,
)


def real_run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


# The uid useradd --system hands out in this fake database (the tests run as root, so files can be given it).
SYSTEM_UID = 990


class Accounts:
    """A passwd database that useradd and usermod (as watched commands) write to."""

    def __init__(self, **entries):
        self.entries = dict(entries)
        self.commands = []

    def lookup(self, name):
        return self.entries[name]

    def run(self, argv):
        if argv[0].endswith("ssh-keygen"):
            try:
                return real_run(argv)
            except FileNotFoundError as exc:
                return 127, "", str(exc)
        self.commands.append(argv)
        name = argv[-1]
        flags = {"--system", "--user-group", "--no-create-home"}
        words = [word for word in argv[1:-1] if word not in flags]
        options = dict(zip(words[0::2], words[1::2]))
        if argv[0] == "useradd":
            self.entries[name] = pwd.struct_passwd((name, "!", SYSTEM_UID, SYSTEM_UID, options["--comment"],
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


def test_a_group_of_the_name_without_its_account_is_refused_not_joined():
    accounts = Accounts()
    with pytest.raises(IdentityError, match="a group named docker exists already"):
        ensure_account("docker", "/var/lib/revtunnel", "/usr/sbin/nologin", "c", accounts.run,
                       lookup=accounts.lookup, group_exists=lambda name: True)
    assert accounts.commands == []


@pytest.mark.parametrize("uid", [0, 1000, 1500])
def test_root_or_a_person_s_account_is_never_taken_over(uid):
    person = pwd.struct_passwd(("alice", "x", uid, uid, "Alice", "/home/alice", "/bin/bash"))
    accounts = Accounts(alice=person)
    with pytest.raises(IdentityError, match="not a system account"):
        ensure_account("alice", "/var/lib/revtunnel", "/usr/sbin/nologin", "c", accounts.run,
                       lookup=accounts.lookup, uid_min=1000)
    assert accounts.commands == []


@pytest.mark.parametrize("home", ["/var/lib/../etc", "/var/lib/./x", "/var//lib", "/var/lib/x/", "var/lib"])
def test_a_home_that_is_not_a_plain_absolute_path_is_refused(home):
    accounts = Accounts()
    with pytest.raises(IdentityError, match="revtunnel_spoke_home"):
        prepare_identity("revtunnel", home, "/usr/sbin/nologin", "c", accounts.run, lookup=accounts.lookup,
                         group_exists=lambda name: False)
    assert accounts.commands == []


def test_an_existing_home_of_someone_else_with_files_in_it_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("someone's file\n")
    os.chown(tmp_path, 4242, 4242)
    accounts = Accounts()
    with pytest.raises(IdentityError, match="belongs to uid 4242 and is not an empty directory"):
        prepare_identity("revtunnel", str(tmp_path), "/usr/sbin/nologin", "c", accounts.run, lookup=accounts.lookup,
                         group_exists=lambda name: False)
    assert accounts.commands == [] and tmp_path.stat().st_uid == 4242


def test_an_empty_home_made_beforehand_is_taken(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 4242, 4242)
    accounts = Accounts()
    result = prepare_identity("revtunnel", str(home), "/usr/sbin/nologin", "c", accounts.run, lookup=accounts.lookup,
                              group_exists=lambda name: False)
    assert result.account_created and home.stat().st_uid == SYSTEM_UID and home.stat().st_mode & 0o777 == 0o700


def test_a_key_that_cannot_be_made_after_the_account_was_made_reports_the_change(tmp_path):
    accounts = Accounts()
    with pytest.raises(IdentityError) as error:
        prepare_identity("revtunnel", str(tmp_path / "home"), "/usr/sbin/nologin", "c", accounts.run,
                         lookup=accounts.lookup, group_exists=lambda name: False, ssh_keygen="/nonexistent/ssh-keygen")
    assert error.value.changed and "the account revtunnel was already made" in str(error.value)


def test_the_tunnel_s_account_with_another_shell_or_home_is_mended_in_one_usermod():
    old = pwd.struct_passwd(("revtunnel", "!", 999, 999, "tunnel client", "/home/revtunnel", "/bin/bash"))
    accounts = Accounts(revtunnel=old)
    changed, created = ensure_account("revtunnel", "/var/lib/revtunnel", "/usr/sbin/nologin", "tunnel client",
                                      accounts.run, lookup=accounts.lookup)
    assert changed and not created
    assert accounts.commands == [["usermod", "--home", "/var/lib/revtunnel", "--shell", "/usr/sbin/nologin",
                                  "revtunnel"]]
    assert ensure_account("revtunnel", "/var/lib/revtunnel", "/usr/sbin/nologin", "tunnel client", accounts.run,
                          lookup=accounts.lookup) == (False, False)


def test_a_service_s_system_account_is_not_taken_over():
    service = pwd.struct_passwd(("postgres", "*", 110, 117, "PostgreSQL administrator", "/var/lib/postgresql",
                                 "/bin/bash"))
    accounts = Accounts(postgres=service)
    with pytest.raises(IdentityError, match="not the tunnel's|not root"):
        ensure_account("postgres", "/var/lib/revtunnel", "/usr/sbin/nologin", "tunnel client", accounts.run,
                       lookup=accounts.lookup)
    assert accounts.commands == []


def test_a_home_that_is_a_link_is_refused(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    (tmp_path / "home").symlink_to(target)
    accounts = Accounts()
    with pytest.raises(IdentityError, match="symbolic link"):
        prepare_identity("revtunnel", str(tmp_path / "home"), "/usr/sbin/nologin", "c", accounts.run,
                         lookup=accounts.lookup, group_exists=lambda name: False)
    assert accounts.commands == [] and target.stat().st_uid == os.getuid()


def test_check_mode_runs_no_command_and_makes_no_home(tmp_path):
    accounts = Accounts()
    result = prepare_identity("revtunnel", str(tmp_path / "home"), "/usr/sbin/nologin", "c", accounts.run,
                              check_mode=True, lookup=accounts.lookup,
                              resolve=[{"hub": "hub-1", "address": "localhost"}])
    assert result.changed and result.account_created and result.public_key is None
    assert accounts.commands == [] and not (tmp_path / "home").exists()


@pytest.mark.parametrize("name", ["-o", "Root", "a b", "x" * 33, "", "revtunnel\n", "root"])
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


# --- state absent: remove the tunnel's account and home, and nothing else (red team, round four) -------------

COMMENT = "hubspoke.revtunnel tunnel client"


def tunnel_home(tmp_path, uid=SYSTEM_UID):
    home = tmp_path / "revtunnel"
    home.mkdir()
    for name in ("id_ed25519", "id_ed25519.pub"):
        (home / name).write_text("key\n")
    os.chown(home, uid, uid)
    return home


def test_the_tunnel_s_account_and_its_home_are_removed(tmp_path):
    home = tunnel_home(tmp_path)
    accounts = Accounts(revtunnel=pwd.struct_passwd(("revtunnel", "!", SYSTEM_UID, SYSTEM_UID, COMMENT, str(home),
                                                     "/usr/sbin/nologin")))
    assert remove_identity("revtunnel", str(home), COMMENT, accounts.run, check_mode=True,
                           lookup=accounts.lookup, uid_min=1000) is True
    assert home.exists() and accounts.commands == []
    assert remove_identity("revtunnel", str(home), COMMENT, accounts.run, lookup=accounts.lookup, uid_min=1000) is True
    assert not home.exists() and accounts.commands == [["userdel", "revtunnel"]]


@pytest.mark.parametrize("entry", [("admin", "x", 1000, 1000, "", "/home/admin", "/bin/bash"),
                                   ("postgres", "x", 105, 105, "PostgreSQL administrator", "/var/lib/postgresql",
                                    "/bin/bash"),
                                   ("root", "x", 0, 0, "root", "/root", "/bin/bash")])
def test_a_person_s_or_a_service_s_account_named_as_the_tunnel_s_is_never_removed(tmp_path, entry):
    # site.yml with revtunnel_state: absent and revtunnel_spoke_user: admin removed the lab's admin account.
    accounts = Accounts(**{entry[0]: pwd.struct_passwd(entry)})
    with pytest.raises(IdentityError, match="not the tunnel's|not root"):
        remove_identity(entry[0], str(tmp_path / "none"), COMMENT, accounts.run, lookup=accounts.lookup, uid_min=1000)
    assert accounts.commands == []


def test_a_home_that_is_a_system_directory_is_never_removed(tmp_path):
    # revtunnel_spoke_home: /srv with revtunnel_state: absent deleted /srv and everything in it.
    system = tmp_path / "srv"
    (system / "precious").mkdir(parents=True)
    (system / "precious" / "file").write_text("data\n")
    accounts = Accounts(revtunnel=pwd.struct_passwd(("revtunnel", "!", SYSTEM_UID, SYSTEM_UID, COMMENT,
                                                     "/var/lib/revtunnel", "/usr/sbin/nologin")))
    with pytest.raises(IdentityError, match="revtunnel_spoke_home=.*Nothing was removed"):
        remove_identity("revtunnel", str(system), COMMENT, accounts.run, lookup=accounts.lookup, uid_min=1000)
    assert (system / "precious" / "file").read_text() == "data\n" and accounts.commands == []


def test_a_home_left_behind_by_a_gone_account_loses_only_the_tunnel_s_key(tmp_path):
    home = tunnel_home(tmp_path, uid=4242)
    accounts = Accounts()
    assert remove_identity("revtunnel", str(home), COMMENT, accounts.run, lookup=accounts.lookup, uid_min=1000)
    assert not home.exists() and accounts.commands == []
    assert remove_identity("revtunnel", str(home), COMMENT, accounts.run, lookup=accounts.lookup, uid_min=1000) is False
