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
    # '%' out: ipaddress takes any text after it as an IPv6 scope, line breaks and spaces included.
    if isinstance(value, str) and value.isascii() and value.isprintable() and "%" not in value:
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
    if key_type == "ssh-ed25519" and blob[4 + length:] != struct.pack(">I", 32) + blob[-32:]:
        raise RuleError(f"{hint}; its ed25519 key is not 32 bytes: the line is damaged")
    return f"{key_type} {data}"


def _printable_word(value):
    return isinstance(value, str) and value.isprintable() and not any(ch.isspace() for ch in value)


@functools.lru_cache(maxsize=4096)
def _from_pattern_problem(pattern):
    """What is wrong with one from= pattern, or None; cached: a lab repeats its networks per spoke."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body or not _printable_word(body) or not body.isascii() or any(ch in body for ch in ',"\'\\%'):
        return (
            "is not an sshd from= pattern: no commas, quotes, spaces or control characters, and no '%'; "
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


# --- the roles' inputs, each checked by the same rules ------------------------------------------------------
#
# Each checker takes the role's values as a dict (what the inventory and the role's defaults give) and returns
# one message per value that breaks a rule, naming the variable; the roles' preflights fail on any (the filter
# hubspoke.revtunnel.input_errors). Every value that reaches a file ssh, sshd or systemd reads is in one of them.


def ephemeral_overlap(range_start, range_end, local_port_range):
    """The hub's ephemeral ports (START, END) when the spokes' range overlaps them, else None.

    LOCAL_PORT_RANGE is the text of /proc/sys/net/ipv4/ip_local_port_range ('32768\t60999'); the kernel takes a
    port from it for connect() without bind() and for bind() to port 0, and no bind hook sees that port: the bind
    filter cannot keep another account off a spoke's port inside it.
    """
    found = re.fullmatch(r"\s*([0-9]+)\s+([0-9]+)\s*", local_port_range or "")
    if not found or not is_int(range_start) or not is_int(range_end):
        return None
    low, high = int(found[1]), int(found[2])
    return (low, high) if range_start <= high and low <= range_end else None


def _collect(errors, check, *args):
    try:
        check(*args)
    except RuleError as exc:
        errors.append(str(exc))


def number(value, what, low, high=None, kind=int):
    """An int (or, with kind float, a number) between LOW and HIGH, given as a number or as digits."""
    # ASCII digits only and nothing around them: the value is written into the files as it was given.
    if isinstance(value, str) and re.fullmatch(r"[0-9]+" if kind is int else r"[0-9]+(\.[0-9]+)?", value):
        value = kind(value)
    ok = (is_int(value) or (kind is float and isinstance(value, float))) and value >= low \
        and (high is None or value <= high)
    if not ok:
        bound = f"{low} or more" if high is None else f"from {low} to {high}"
        raise RuleError(f"{what} ({value!r}) must be a number {bound}")
    return value


# What Ansible's bool filter and a role's argument spec take as a boolean (case and spaces around aside).
BOOLEAN_WORDS = frozenset(("y", "yes", "on", "1", "true", "t", "n", "no", "off", "0", "false", "f"))
HUB_SWITCHES = ("revtunnel_prune_ports", "revtunnel_reaper_enabled", "revtunnel_hub_bind_filter",
                "revtunnel_hub_harden_crypto", "revtunnel_hub_restrict_local_access")
SPOKE_SWITCHES = ("revtunnel_spoke_penalty_exempt",)


def boolean(value, what):
    """A switch: a bool, 0 or 1, or a word the bool filter reads ('yes', 'off', ...); never a typo read as false."""
    if isinstance(value, bool) or (is_int(value) and value in (0, 1)) or (
            isinstance(value, str) and value.strip().lower() in BOOLEAN_WORDS):
        return value
    raise RuleError(f"{what} ({value!r}) must be true or false")


def one_line(value, what):
    """Any printable text without a line break, a quote, '%' or '#' (a comment, a line label)."""
    if not isinstance(value, str) or not value or not value.isprintable() or any(c in value for c in "\"'%#\\"):
        raise RuleError(f"{what} ({value!r}) must be one line of printable text without quotes, '%', '#' or '\\'")
    return value


def forwards(value, what):
    """revtunnel_forwards as the spoke's ssh config takes it: names, ports and hosts."""
    if value is None:
        return
    if not isinstance(value, (list, tuple)):
        raise RuleError(f"{what} must be a list of {{name, port[, host]}}, got {value!r}")
    for forward in value:
        if not isinstance(forward, dict):
            raise RuleError(f"{what} entry {forward!r} must be a mapping with name, port and optionally host")
        name = forward_name(forward.get("name"), what)
        port(forward.get("port"), f"{what} {name!r} port")
        if forward.get("host") is not None:
            forward_host(forward["host"], what, name)


def check_spoke(values):
    """The spoke role's values; HUB_ADDRESSES and HUB_PORTS map each of its hubs to what it dials."""
    errors = []
    hubs = values.get("hubs") or []
    if values.get("inventory_hostname") in hubs:
        errors.append(f"the host is in both '{values.get('revtunnel_hub_group')}' and the spokes: a host is either the "
                      "hub or a spoke; remove it from one group")
    if values.get("revtunnel_hub_address_given") and not isinstance(values.get("revtunnel_hub_address"), str):
        errors.append(f"revtunnel_hub_address ({values.get('revtunnel_hub_address')!r}) must be a host name or an "
                      "IP address")
    if not hubs:
        errors.append(f"group '{values.get('revtunnel_hub_group')}' (revtunnel_hub_group) holds no host; put the hub "
                      "(or hubs) in it")
    for hub in hubs:
        _collect(errors, inventory_name, hub, "hub")
        _collect(errors, address, (values.get("hub_addresses") or {}).get(hub), f"revtunnel_hub_address of hub {hub}")
        _collect(errors, port, (values.get("hub_ports") or {}).get(hub), f"revtunnel_hub_port of hub {hub}")
    addresses = [((values.get("hub_addresses") or {}).get(h), str((values.get("hub_ports") or {}).get(h)))
                 for h in hubs]
    if len(set(addresses)) != len(addresses):
        errors.append("several hubs share one revtunnel_hub_address and revtunnel_hub_port; with more than one "
                      "hub, set revtunnel_hub_address (or revtunnel_hub_port) in each hub's host_vars, not in "
                      "group_vars/all")
    _collect(errors, account, values.get("revtunnel_user"), "revtunnel_user")
    _collect(errors, account, values.get("revtunnel_spoke_user"), "revtunnel_spoke_user")
    _collect(errors, path, values.get("revtunnel_spoke_home"), "revtunnel_spoke_home")
    _collect(errors, port, values.get("revtunnel_local_ssh_port"), "revtunnel_local_ssh_port")
    _collect(errors, forwards, values.get("revtunnel_forwards"), "revtunnel_forwards")
    for name, low, high, kind in (("revtunnel_server_alive_interval", 1, 3600, int),
                                  ("revtunnel_server_alive_count_max", 1, 1000, int),
                                  ("revtunnel_connect_timeout", 1, 600, int),
                                  ("revtunnel_restart_sec", 0, 3600, float),
                                  ("revtunnel_retry_jitter_ms", 200, 600000, int),
                                  ("revtunnel_wait_timeout", 1, 3600, int),
                                  ("revtunnel_restart_delay", 0, 600, int)):
        _collect(errors, number, values.get(name), name, low, high, kind)
    for name in SPOKE_SWITCHES:
        if name in values:
            _collect(errors, boolean, values[name], name)
    if "revtunnel_state" in values and values["revtunnel_state"] not in ("present", "absent"):
        errors.append(f"revtunnel_state ({values['revtunnel_state']!r}) must be present or absent")
    return errors


def operators(value, spokes, what="revtunnel_operators"):
    """The operators of the jump account: name, one public key line, and 'all' or spokes of the inventory."""
    errors = []
    if not isinstance(value, (list, tuple)):
        return [f"{what} must be a list of {{name, key, spokes}}, got {value!r}"]
    seen = set()
    for index, operator in enumerate(value, start=1):
        if not isinstance(operator, dict):
            errors.append(f"{what} #{index} must be a mapping with name, key and spokes")
            continue
        name = operator.get("name")
        label = f"{what} {name!r}" if isinstance(name, str) else f"{what} #{index}"
        _collect(errors, operator_name, name, f"{label} name")
        if name in seen:
            errors.append(f"{label} is listed twice: give each operator one entry")
        seen.add(name)
        _collect(errors, public_key, (operator.get("key") or "").strip() if isinstance(operator.get("key"), str)
                 else operator.get("key"), f"{label} key")
        wanted = operator.get("spokes")
        if wanted == "all":
            continue
        if not isinstance(wanted, (list, tuple)):
            errors.append(f"{label} spokes must be 'all' or a list of spoke names, got {wanted!r}")
            continue
        unknown = [str(s) for s in wanted if s not in spokes]
        if unknown:
            errors.append(f"{label}: spoke(s) {', '.join(unknown)} are not in the inventory's spokes; fix the name "
                          "or add the spoke")
    return errors


def truthy(value):
    """A switch that boolean() accepted, read as Ansible's bool filter reads it."""
    return value is True or (is_int(value) and value == 1) or (
        isinstance(value, str) and value.strip().lower() in ("y", "yes", "on", "1", "true", "t"))


def hub_system(text):
    """{key: value} of the hub preflight's one read of the hub: 'include=0', 'iptables=0', 'ports=32768 60999'."""
    found = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found


def hub_system_errors(system, restrict_local_access):
    """What the hub's system lacks (SYSTEM from hub_system) for sshd's drop-in and the local access limit."""
    errors = []
    if system.get("include", "0") != "0":
        errors.append("/etc/ssh/sshd_config has no 'Include /etc/ssh/sshd_config.d/*.conf', so the tunnel account's "
                      "restrictions would be ignored; add that line at the top of sshd_config and run again")
    if truthy(restrict_local_access) and system.get("iptables", "0") != "0":
        errors.append("revtunnel_hub_restrict_local_access needs /usr/sbin/iptables and /usr/sbin/ip6tables; install "
                      "the iptables package on the hub or set it to false")
    return errors


def check_hub(values):
    """The hub role's values; with hub_system (the preflight's read of the hub), what the hub's system lacks."""
    errors = []
    system = hub_system(values.get("hub_system"))
    hubs, spokes = list(values.get("hubs") or ()), list(values.get("spokes") or ())
    if "hubs" in values and not hubs:
        errors.append("the inventory group 'hub' holds no host; put the hub (or the hubs) in it")
    both = [hub for hub in hubs if hub in spokes]
    if both:
        errors.append(f"host(s) {', '.join(map(str, both))} are in both groups 'hub' and "
                      f"'{values.get('revtunnel_spokes_group', 'spokes')}': a host is either the hub or a spoke")
    for hub in values.get("hubs") or ():
        try:
            inventory_name(hub, "hub")
        except RuleError:
            errors.append(f"hub {hub!r}: a hub's inventory name becomes a unit and file name on every spoke "
                          "(revtunnel@<hub>.service); use letters, digits, '.', '_' or '-' only, and set "
                          "revtunnel_hub_address for the address to dial")
    _collect(errors, account, values.get("revtunnel_user"), "revtunnel_user")
    _collect(errors, account, values.get("revtunnel_jump_user"), "revtunnel_jump_user")
    if values.get("revtunnel_jump_user") == values.get("revtunnel_user"):
        errors.append("revtunnel_jump_user must differ from revtunnel_user")
    users = values.get("revtunnel_hub_local_access_users")
    if not isinstance(users, (list, tuple)):
        errors.append(f"revtunnel_hub_local_access_users must be a list of account names, got {users!r}")
    else:
        for user in users:
            _collect(errors, account, user, "revtunnel_hub_local_access_users entry", False)
    for name in ("revtunnel_registry_path", "revtunnel_authorized_keys_dir", "revtunnel_metrics_textfile_dir"):
        _collect(errors, path, values.get(name), name)
    if values.get("records_dir"):
        _collect(errors, path, values.get("records_dir"), "revtunnel_hub_records_dir", True)
    max_startups = values.get("revtunnel_max_startups")
    if not isinstance(max_startups, (str, int)) or not re.fullmatch(r"[0-9]+(:[0-9]+:[0-9]+)?", str(max_startups)):
        errors.append(f"revtunnel_max_startups ({max_startups!r}) must be sshd's MaxStartups, 'start:rate:full' "
                      "(for example 100:30:400) or one number")
    for name, low, high in (("revtunnel_port_range_start", PORT_FLOOR, PORT_CEILING),
                            ("revtunnel_port_range_end", PORT_FLOOR, PORT_CEILING),
                            ("revtunnel_per_source_max_startups", 1, 100000),
                            ("revtunnel_client_alive_interval", 1, 3600),
                            ("revtunnel_client_alive_count_max", 1, 1000),
                            ("revtunnel_reaper_idle_grace", 0, 86400),
                            ("revtunnel_reaper_window", 1, 86400),
                            ("revtunnel_reaper_max_replacements", 1, 10000),
                            ("revtunnel_reaper_hold", 0, 86400),
                            ("revtunnel_metrics_interval", 1, 86400)):
        _collect(errors, number, values.get(name), name, low, high)
    try:
        bounds = [number(values.get(n), n, PORT_FLOOR, PORT_CEILING)
                  for n in ("revtunnel_port_range_start", "revtunnel_port_range_end")]
    except RuleError:
        bounds = None
    overlap = bounds and ephemeral_overlap(*bounds, system.get("ports", values.get("local_port_range")))
    if overlap:
        errors.append(
            f"the spokes' port range {bounds[0]}-{bounds[1]} (revtunnel_port_range_start, revtunnel_port_range_end) "
            f"overlaps the hub's ephemeral ports {overlap[0]}-{overlap[1]} (net.ipv4.ip_local_port_range): the "
            "kernel hands those out to any account's connect() or bind() to port 0, where the bind filter cannot "
            "refuse them, so a spoke's port could be taken while its tunnel is down; choose a range outside "
            f"{overlap[0]}-{overlap[1]} (the default is 10000-10999)")
    for name in HUB_SWITCHES:
        if name in values:
            _collect(errors, boolean, values[name], name)
    if str(values.get("revtunnel_metrics")).lower() not in ("true", "false", "yes", "no", "auto"):
        errors.append(f"revtunnel_metrics ({values.get('revtunnel_metrics')!r}) must be auto, true or false")
    errors.extend(operators(values.get("revtunnel_operators"), set(spokes)))
    errors.extend(hub_system_errors(system, values.get("revtunnel_hub_restrict_local_access")))
    return errors


def check_client(values):
    """The client role's own values, and every hub's and spoke's value that reaches the operator's ssh config."""
    errors = []
    _collect(errors, inventory_name, values.get("revtunnel_lab_name"), "revtunnel_lab_name")
    _collect(errors, path, values.get("revtunnel_client_ssh_dir"), "revtunnel_client_ssh_dir", True)
    for name in ("revtunnel_client_hub_user", "revtunnel_client_spoke_user"):
        if values.get(name) is not None:
            _collect(errors, account, values.get(name), name, False)
    if values.get("revtunnel_client_identity_file") is not None:
        _collect(errors, path, values.get("revtunnel_client_identity_file"), "revtunnel_client_identity_file", True)
    if values.get("revtunnel_client_hub_address") is not None:
        _collect(errors, address, values.get("revtunnel_client_hub_address"), "revtunnel_client_hub_address")
    if values.get("revtunnel_client_hub_port") is not None:
        _collect(errors, port, values.get("revtunnel_client_hub_port"), "revtunnel_client_hub_port")
    for hub, seen in (values.get("hubs") or {}).items():
        _collect(errors, inventory_name, hub, "hub")
        _collect(errors, address, seen.get("address"), f"revtunnel_hub_address (or ansible_host) of hub {hub}")
        _collect(errors, port, seen.get("port"), f"revtunnel_hub_port of hub {hub}")
    for spoke, seen in (values.get("spokes") or {}).items():
        _collect(errors, inventory_name, spoke, "spoke")
        _collect(errors, forwards, seen.get("forwards"), f"revtunnel_forwards of spoke {spoke}")
    return errors
