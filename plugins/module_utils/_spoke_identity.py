# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A spoke's tunnel identity in one pass: its hubs resolve, then its account, private home and key exist.

The hubs' addresses are resolved first, so a spoke that cannot reach them is left exactly as it was. The
account is a system account with a group of its own name, made and mended with useradd and usermod; the
key is made by _spoke_key in the account's home. Commands go through a ``run(argv) -> (rc, out, err)``
callable and accounts are looked up through ``lookup(name)`` (pwd.getpwnam), so tests can watch both.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import stat
from dataclasses import dataclass, field

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _rules
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._file_set import FileSetError
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_key import SpokeKeyError, ensure_key

KEY_FILE = "id_ed25519"
# What the collection leaves in the home: the key pair and a rotation's next pair.
KEY_FILES = frozenset((KEY_FILE, KEY_FILE + ".pub", KEY_FILE + ".next", KEY_FILE + ".next.pub"))
LOGIN_DEFS = "/etc/login.defs"


class IdentityError(Exception):
    """The identity cannot be made here; the message names the value to change.

    ``changed`` is True when the host was already changed (the account made) before the failure.
    """

    def __init__(self, message, changed=False):
        super().__init__(message)
        self.changed = changed


@dataclass
class IdentityResult:
    """What prepare_identity did (or, in check mode, would do)."""

    changed: bool
    account_created: bool
    key_created: bool
    public_key: str | None
    addresses: dict = field(default_factory=dict)


def resolve_hubs(targets, getaddrinfo=socket.getaddrinfo):
    """Resolve each {'hub', 'address'} of TARGETS as the tunnel's ssh will; {hub: [addresses]}.

    Every address is tried, and one error names all that failed, so one run shows every inventory value to fix.
    """
    resolved, failed = {}, []
    for target in targets:
        hub, address = target["hub"], str(target["address"])
        try:
            infos = getaddrinfo(address, None, 0, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, ValueError) as exc:
            failed.append(f"hub {hub}: revtunnel_hub_address={address} ({exc})")
            continue
        resolved[hub] = sorted({info[4][0] for info in infos})
    if failed:
        raise IdentityError("this spoke cannot resolve " + "; ".join(failed) + ". Set revtunnel_hub_address to a "
                            "name or IP address that this spoke can reach; nothing was changed on this spoke.")
    return resolved


def _group_exists(name):
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def first_user_uid(path=LOGIN_DEFS):
    """UID_MIN of login.defs (1000 when unset): accounts below it are system accounts."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "UID_MIN" and fields[1].isdigit():
                    return int(fields[1])
    except OSError:
        pass
    return 1000


def ensure_account(name, home, shell, comment, run, check_mode=False, lookup=pwd.getpwnam,
                   group_exists=_group_exists, useradd="useradd", usermod="usermod", uid_min=None):
    """Make NAME a system account with HOME, SHELL and COMMENT, or mend those three; (changed, created).

    A new account gets a new group of its own name and no home from useradd: the home is made private to it
    by the caller. Never taken over: root, a person's account (uid at or above UID_MIN), a service's account
    (one without this COMMENT), nor an existing group of that name (it could grant rights, such as docker).
    """
    entry = _checked_entry(name, lookup)
    if entry is None:
        if group_exists(name):
            raise IdentityError(f"revtunnel_spoke_user={name}: a group named {name} exists already, and the tunnel "
                                "account must not join it; choose another revtunnel_spoke_user or remove that group")
        if not check_mode:
            _run(run, [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", home, "--shell", shell,
                       "--comment", comment, name], f"cannot create the tunnel account {name}")
        return True, True
    limit = first_user_uid() if uid_min is None else uid_min
    if entry.pw_uid == 0 or entry.pw_uid >= limit:
        raise IdentityError(f"revtunnel_spoke_user={name}: that account exists and is not a system account "
                            f"(uid {entry.pw_uid}); the tunnel needs an account of its own, choose another name")
    # A service's account (postgres, www-data) is a system account too: only one this collection made, which
    # carries its comment, is mended.
    if entry.pw_gecos != comment:
        raise IdentityError(f"revtunnel_spoke_user={name}: that account exists and is not the tunnel's (its comment "
                            f"is {entry.pw_gecos!r}, not {comment!r}); choose another revtunnel_spoke_user, or give "
                            "the account that comment to hand it to the tunnel")
    changes = []
    for option, have, want in (("--home", entry.pw_dir, home), ("--shell", entry.pw_shell, shell)):
        if have != want:
            changes += [option, want]
    if changes and not check_mode:
        _run(run, [usermod, *changes, name], f"cannot mend the tunnel account {name}")
    return bool(changes), False


def _run(run, argv, what):
    rc, _out, err = run(argv)
    if rc != 0:
        raise IdentityError(f"{what}: {' '.join(argv[:1])} failed with {rc}: {err.strip()}")


def _check_home(home, uid):
    """A home that is a clean absolute path and, when it exists already, the account's own or empty."""
    if not os.path.isabs(home or "") or os.path.normpath(home) != home:
        raise IdentityError(f"revtunnel_spoke_home={home!r} is not a plain absolute path (no '.', '..' or '//')")
    try:
        info = os.lstat(home)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise IdentityError(f"revtunnel_spoke_home={home} is a symbolic link: the tunnel account's home must be a "
                            "directory of its own; choose another path or replace the link")
    if (uid is None or info.st_uid != uid) and (not os.path.isdir(home) or os.listdir(home)):
        raise IdentityError(f"revtunnel_spoke_home={home} exists, belongs to uid {info.st_uid} and is not an "
                            "empty directory: the tunnel account's home must be its own; choose another path")


def _key_group(user, entry):
    """The group of the key files: the group named after the account, else its primary group."""
    try:
        return grp.getgrnam(user).gr_gid
    except KeyError:
        return entry.pw_gid


def prepare_identity(user, home, shell, comment, run, key_comment="", home_mode=0o700, resolve=(),
                     ssh_keygen="/usr/bin/ssh-keygen", check_mode=False, getaddrinfo=socket.getaddrinfo,
                     lookup=pwd.getpwnam, group_exists=_group_exists, useradd="useradd", usermod="usermod",
                     uid_min=None):
    """Resolve the hubs, then make or mend the account, its home (HOME_MODE) and its key at HOME/id_ed25519.

    Every check that can refuse runs before the first change.
    """
    addresses = resolve_hubs(resolve, getaddrinfo)
    try:
        existing = lookup(user)
    except KeyError:
        existing = None
    _check_home(home, existing.pw_uid if existing else None)
    account_changed, account_created = ensure_account(user, home, shell, comment, run, check_mode, lookup=lookup,
                                                      group_exists=group_exists, useradd=useradd, usermod=usermod,
                                                      uid_min=uid_min)
    uid = gid = None
    try:
        entry = lookup(user)
        uid, gid = entry.pw_uid, _key_group(user, entry)
    except KeyError:
        if not check_mode:
            raise IdentityError(f"the tunnel account {user} was made but cannot be found", changed=True) from None
    try:
        key = ensure_key(os.path.join(home, KEY_FILE), run, ssh_keygen=ssh_keygen, comment=key_comment, uid=uid,
                         gid=gid, check_mode=check_mode, directory_mode=home_mode)
    except (SpokeKeyError, FileSetError, OSError) as exc:
        if not account_changed:
            raise
        raise IdentityError(f"{exc} (the account {user} was already made or mended)", changed=True) from exc
    return IdentityResult(changed=account_changed or key.changed, account_created=account_created,
                          key_created=key.created, public_key=key.public_key, addresses=addresses)


def _checked_entry(name, lookup):
    """The passwd entry of NAME (None when there is none), once NAME passed the account-name rule."""
    try:
        _rules.account(name, "revtunnel_spoke_user")
    except _rules.RuleError as exc:
        raise IdentityError(str(exc)) from None
    try:
        return lookup(name)
    except KeyError:
        return None


def _tunnel_account(name, comment, lookup, uid_min):
    """The passwd entry of NAME when it is the tunnel's (a system account carrying COMMENT), None when there is no
    such account; IdentityError for anyone else's: a person's, root, or a service's."""
    entry = _checked_entry(name, lookup)
    if entry is None:
        return None
    limit = first_user_uid() if uid_min is None else uid_min
    if entry.pw_uid == 0 or entry.pw_uid >= limit or entry.pw_gecos != comment:
        raise IdentityError(f"revtunnel_spoke_user={name}: that account is not the tunnel's (uid {entry.pw_uid}, "
                            f"comment {entry.pw_gecos!r}), so it is not removed; fix revtunnel_spoke_user for this "
                            "spoke. Nothing was removed")
    return entry


def _removable_home(home, entry):
    """What removing HOME takes: 'tree' (the tunnel account's own directory), a list of the collection's key files
    (a home whose account is gone already), or None (nothing there). IdentityError for any other directory."""
    if not os.path.isabs(home or "") or os.path.normpath(home) != home or home == "/":
        raise IdentityError(f"revtunnel_spoke_home={home!r} is not a plain absolute path. Nothing was removed")
    try:
        info = os.lstat(home)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        raise IdentityError(f"revtunnel_spoke_home={home} is not a directory (a link or a file), so it is not the "
                            "tunnel account's home; fix revtunnel_spoke_home for this spoke. Nothing was removed")
    if entry is not None and info.st_uid == entry.pw_uid and entry.pw_dir == home:
        return "tree"
    entries = os.listdir(home)
    if entry is None and set(entries) <= KEY_FILES:
        return sorted(entries)
    raise IdentityError(f"revtunnel_spoke_home={home} belongs to uid {info.st_uid} and holds more than the tunnel's "
                        "key, so it is not the tunnel account's home; fix revtunnel_spoke_home for this spoke. "
                        "Nothing was removed")


def remove_identity(user, home, comment, run, check_mode=False, lookup=pwd.getpwnam, userdel="userdel",
                    uid_min=None):
    """Remove the tunnel account and its home, and nothing else: True when something was (or would be) removed.

    The same guards as making it: an account that is not the tunnel's, or a home that is not that account's own
    (a system directory, another account's), is refused before anything is removed.
    """
    entry = _tunnel_account(user, comment, lookup, uid_min)
    home_plan = _removable_home(home, entry)
    if check_mode:
        return entry is not None or home_plan is not None
    if home_plan == "tree":
        shutil.rmtree(home)
    elif home_plan is not None:
        for name in home_plan:
            os.unlink(os.path.join(home, name))
        os.rmdir(home)
    if entry is not None:
        _run(run, [userdel, user], f"cannot remove the tunnel account {user}")
    return entry is not None or home_plan is not None
