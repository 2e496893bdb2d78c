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
import re
import socket
from dataclasses import dataclass, field

from ansible_collections.hubspoke.revtunnel.plugins.module_utils._spoke_key import ensure_key

# The same rule as the spoke role's preflight: a plain account name, so no value reads as an option.
ACCOUNT_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
KEY_FILE = "id_ed25519"


class IdentityError(Exception):
    """The identity cannot be made here; the message names the value to change."""


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


def ensure_account(name, home, shell, comment, run, check_mode=False, lookup=pwd.getpwnam,
                   group_exists=_group_exists, useradd="useradd", usermod="usermod"):
    """Make NAME a system account with HOME, SHELL and COMMENT, or mend those three; (changed, created).

    A new account gets a group of its own name (an existing group of that name is taken as its group) and
    no home from useradd: the home is made private to it by the caller.
    """
    if not ACCOUNT_NAME.match(name or ""):
        raise IdentityError(f"revtunnel_spoke_user={name!r} is not a plain account name "
                            "(lowercase letters, digits, '_' and '-', 32 at most)")
    try:
        entry = lookup(name)
    except KeyError:
        entry = None
    if entry is None:
        if not check_mode:
            group = ["--gid", name] if group_exists(name) else ["--user-group"]
            _run(run, [useradd, "--system", *group, "--no-create-home", "--home-dir", home, "--shell", shell,
                       "--comment", comment, name], f"cannot create the tunnel account {name}")
        return True, True
    changes = []
    for option, have, want in (("--home", entry.pw_dir, home), ("--shell", entry.pw_shell, shell),
                               ("--comment", entry.pw_gecos, comment)):
        if have != want:
            changes += [option, want]
    if changes and not check_mode:
        _run(run, [usermod, *changes, name], f"cannot mend the tunnel account {name}")
    return bool(changes), False


def _run(run, argv, what):
    rc, _out, err = run(argv)
    if rc != 0:
        raise IdentityError(f"{what}: {' '.join(argv[:1])} failed with {rc}: {err.strip()}")


def prepare_identity(user, home, shell, comment, run, key_comment="", home_mode=0o700, resolve=(),
                     ssh_keygen="/usr/bin/ssh-keygen", check_mode=False, getaddrinfo=socket.getaddrinfo,
                     lookup=pwd.getpwnam, group_exists=_group_exists, useradd="useradd", usermod="usermod"):
    """Resolve the hubs, then make or mend the account, its home (HOME_MODE) and its key at HOME/id_ed25519."""
    if not os.path.isabs(home or ""):
        raise IdentityError(f"revtunnel_spoke_home={home!r} is not an absolute path")
    addresses = resolve_hubs(resolve, getaddrinfo)
    account_changed, account_created = ensure_account(user, home, shell, comment, run, check_mode, lookup=lookup,
                                                      group_exists=group_exists, useradd=useradd, usermod=usermod)
    uid = gid = None
    try:
        entry = lookup(user)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not check_mode:
            raise IdentityError(f"the tunnel account {user} was made but cannot be found") from None
    key = ensure_key(os.path.join(home, KEY_FILE), run, ssh_keygen=ssh_keygen, comment=key_comment, uid=uid,
                     gid=gid, check_mode=check_mode, directory_mode=home_mode)
    return IdentityResult(changed=account_changed or key.changed, account_created=account_created,
                          key_created=key.created, public_key=key.public_key, addresses=addresses)
