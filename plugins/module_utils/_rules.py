# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one rulebook: every rule a value must pass before it reaches a file that ssh, sshd or systemd reads.

Pure Python with no Ansible import. The registry, the spoke's identity, the preflight filter of the three
roles and the hub's commands all check values here, so each rule is written once. Each check returns the
normalized value or raises RuleError whose message names the value, the variable (``what``) and what to
change. Nothing here reads or writes a file.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
import struct


class RuleError(ValueError):
    """A value breaks a rule; the message names it and says what to change."""


# A name that becomes a unit instance, a file name, an ssh_config Host alias and an authorized_keys comment.
INVENTORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# An account name, on the hub, the spokes or the operator's side: no value can read as an option.
ACCOUNT_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
# An operator's name in the jump account's authorized_keys comment.
OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
FORWARD_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
HOST_PATTERN = re.compile(r"[A-Za-z0-9*?]([A-Za-z0-9.*?-]*[A-Za-z0-9*?])?")
# A path written into a unit or an ssh config: no space, quote, '%' token, '#' or '$' to expand.
PATH = re.compile(r"/[A-Za-z0-9._/-]*")
# The operator's own paths may start with '~' (ssh expands it), the rest as PATH.
USER_PATH = re.compile(r"(~|/)[A-Za-z0-9._/-]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")

PORT_FLOOR = 1024
PORT_CEILING = 65535
PRIMARY_FORWARD = "ssh"
MAX_SPOKE_KEYS = 2
KEY_TYPES = frozenset((
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
))


def is_int(value):
    """An int that is not a bool: true/false is never a port."""
    return isinstance(value, int) and not isinstance(value, bool)


def _full(pattern, value):
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def inventory_name(value, what):
    """A spoke's or hub's inventory name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not _full(INVENTORY_NAME, value):
        raise RuleError(
            f"{what} name {value!r} cannot name a spoke or a hub: an inventory name must be 1-64 letters, digits, "
            "'.', '_' or '-', starting with a letter or a digit (it becomes a unit instance, a file name, "
            "an ssh_config Host alias and an authorized_keys comment); rename the host in the inventory"
        )
    return value


def account(value, what, not_root=True):
    """A plain account name (lower-case letters, digits, '_', '.', '-'), root refused unless told otherwise."""
    if not _full(ACCOUNT_NAME, value) or (not_root and value == "root"):
        raise RuleError(
            f"{what} ({value!r}) must be a plain account name: lower-case letters, digits, '_', '.' or '-', "
            f"starting with a letter or '_', at most 32{', and not root' if not_root else ''}"
        )
    return value


def operator_name(value, what):
    if not _full(OPERATOR_NAME, value):
        raise RuleError(f"{what} ({value!r}) must be a name of letters, digits, '.', '_', '@' or '-'")
    return value


def address(value, what):
    """A host name, an IPv4 address or an IPv6 address, as ssh dials it (HostName)."""
    if isinstance(value, str):
        if _full(HOST_NAME, value) and len(value) <= 253:
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError:
            pass
        else:
            return value
    raise RuleError(f"{what} ({value!r}) must be a host name or an IP address, with nothing else on the line")


def port(value, what, floor=1):
    """A TCP port given as an int or as digits; returns the int."""
    if isinstance(value, str) and value.isdigit() and value.isascii():
        value = int(value)
    if not is_int(value) or not floor <= value <= PORT_CEILING:
        raise RuleError(f"{what} ({value!r}) must be a TCP port ({floor}-{PORT_CEILING})")
    return value


def path(value, what, user=False):
    """An absolute path of letters, digits, '.', '_', '-' and '/', without '.' or '..' parts (user: may start '~')."""
    pattern = USER_PATH if user else PATH
    if (not _full(pattern, value) or re.search(r"(^|/)\.\.?(/|$)|//", value)
            or (len(value) > 1 and value.endswith("/"))):
        start = "'/' or '~'" if user else "'/'"
        raise RuleError(
            f"{what} ({value!r}) must be a path starting with {start} of letters, digits, '.', '_', '-' and '/', "
            "without '.' or '..' parts, spaces, quotes, '%' or '#'"
        )
    return value


def port_range(range_start, range_end):
    """Two ints within 1024-65535, lowest first."""
    for option, value in (("range_start", range_start), ("range_end", range_end)):
        if not is_int(value):
            raise RuleError(f"{option} must be an integer, got {value!r}")
    if range_start > range_end:
        raise RuleError(
            f"range_start ({range_start}) is greater than range_end ({range_end}): "
            "swap them so that range_start is the lowest port of the range "
            "(revtunnel_port_range_start, revtunnel_port_range_end)"
        )
    if range_start < PORT_FLOOR or range_end > PORT_CEILING:
        raise RuleError(
            f"port range {range_start}-{range_end} is outside {PORT_FLOOR}-{PORT_CEILING}: "
            "choose unprivileged ports, for example 10000-10999 "
            "(revtunnel_port_range_start, revtunnel_port_range_end)"
        )


def forward_name(value, where):
    """Forward names become parts of unit and file names, so keep them plain."""
    if not _full(FORWARD_NAME, value):
        raise RuleError(
            f"{where} has a bad forward name {value!r}: use lowercase letters, digits, "
            "'_' and '-', starting with a letter or a digit (for example 'rdp' or 'web-ui')"
        )
    return value


def forward_host(value, where, name):
    """The host a forward leads to, written into ssh configs: a host name, IPv4, or bracketed IPv6."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            ipaddress.IPv6Address(value[1:-1])
        except ValueError:
            pass
        else:
            return value
    if not _full(HOST_NAME, value) or len(value) > 253:
        raise RuleError(
            f"{where}: revtunnel_forwards {name!r} has host {value!r}: give a host name, an IPv4 address "
            "or a bracketed IPv6 address like [2001:db8::1], without spaces or other characters"
        )
    return value


def public_key(value, where):
    """The "type base64" form of an OpenSSH public key line, comment dropped."""
    hint = f"{where}: give the OpenSSH public key line, 'type base64 [comment]'"
    if not isinstance(value, str) or not value.isprintable() or "\n" in value or "\r" in value:
        raise RuleError(f"{hint}; got {value!r}, which is not one printable line")
    fields = value.split()
    if len(fields) < 2:
        raise RuleError(f"{hint}; got {value!r}")
    key_type, data = fields[0], fields[1]
    if key_type not in KEY_TYPES:
        raise RuleError(
            f"{hint}; its type {key_type!r} is not one of {', '.join(sorted(KEY_TYPES))} "
            "(a line with options in front is refused too)"
        )
    try:
        if not _BASE64.fullmatch(data):
            raise ValueError("not base64")
        blob = base64.b64decode(data, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4:4 + length].decode("ascii")
    except (binascii.Error, ValueError, struct.error, UnicodeDecodeError):
        raise RuleError(f"{hint}; its key data is not valid base64 of an SSH public key") from None
    if embedded != key_type or len(blob) < 4 + length + 4:
        raise RuleError(f"{hint}; its key data holds a {embedded!r} key, not {key_type!r}: the line is damaged")
    return f"{key_type} {data}"


def _printable_word(value):
    return isinstance(value, str) and value.isprintable() and not any(ch.isspace() for ch in value)


@functools.lru_cache(maxsize=4096)
def _from_pattern_problem(pattern):
    """What is wrong with one from= pattern, or None; cached: a lab repeats its networks per spoke."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body or not _printable_word(body) or any(ch in body for ch in ',"\'\\'):
        return (
            "is not an sshd from= pattern: no commas, quotes, spaces or control characters; "
            "give one address, network or host name pattern per entry"
        )
    if ":" in body or "/" in body:
        try:
            ipaddress.ip_network(body, strict=True)
        except ValueError as exc:
            return (
                f"is not an address or network ({exc}); "
                "write networks like 192.0.2.0/24 or 2001:db8::/32, with the host bits zero"
            )
        return None
    if len(body) > 253 or not _full(HOST_PATTERN, body):
        return (
            "is not an sshd from= pattern: use an address (10.1.2.3), a network (192.0.2.0/24), a host name "
            "(host.example.org) or a wildcard (*.lab.example.org), optionally negated with a leading '!'"
        )
    return None


def key_from(patterns, where):
    """A validated tuple of sshd from= patterns; None or [] mean no restriction."""
    if patterns is None:
        return ()
    if not isinstance(patterns, (list, tuple)):
        raise RuleError(f"{where}: revtunnel_key_from must be a list of patterns, got {patterns!r}")
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise RuleError(f"{where}: revtunnel_key_from entries must be non-empty strings, got {pattern!r}")
        problem = _from_pattern_problem(pattern)
        if problem:
            raise RuleError(f"{where}: revtunnel_key_from entry {pattern!r} {problem}")
    if patterns and all(pattern.startswith("!") for pattern in patterns):
        raise RuleError(
            f"{where}: revtunnel_key_from {list(patterns)!r} has only negated patterns, so sshd would refuse "
            "the key from everywhere; add the addresses the spoke connects from"
        )
    return tuple(patterns)
