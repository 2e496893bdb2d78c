# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Port registry for reverse tunnels: validation, allocation and safe storage.

Pure Python with no Ansible import, so it can be unit-tested and benchmarked on
its own. The registry's one writer is ``_spoke_registry.sync_registry`` (module
``hubspoke.revtunnel.spoke_registry``); it uses the validation, allocation, lock and
atomic write of this file. :func:`allocate_ports` is the ports-only entry point of
``hubspoke.revtunnel.port_allocation``. The on-disk format is described in
``docs/registry-format.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field

REGISTRY_VERSION_V1 = 1
READABLE_VERSIONS = (1, 2)
DEFAULT_PATH = "/var/lib/revtunnel/ports.json"
DEFAULT_RANGE_START = 10000
DEFAULT_RANGE_END = 10999
PRIMARY_FORWARD = "ssh"
PORT_FLOOR = 1024
PORT_CEILING = 65535
PROC_NET_TCP_PATHS = ("/proc/net/tcp", "/proc/net/tcp6")
FILE_MODE = 0o640
DIR_MODE = 0o750
LOCK_TIMEOUT = 60.0

_TCP_STATE_LISTEN = "0A"
_FORWARD_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_SPOKE_KEYS = frozenset(("name", "port", "forwards"))


class PortRegistryError(Exception):
    """Bad input or an unusable registry; the message says what to change."""


@dataclass(frozen=True)
class SpokeRequest:
    """One listed spoke after validation; ``forwards`` always starts with ssh."""

    name: str
    forwards: tuple
    pin: int | None = None


@dataclass
class Plan:
    """The registry map after allocation and how it differs from before."""

    ports: dict
    added: list = field(default_factory=list)
    released: list = field(default_factory=list)
    moved: list = field(default_factory=list)


@dataclass
class AllocationResult:
    """What one run did (or, in check mode, would do) to the registry."""

    path: str
    ports: dict
    added: list
    released: list
    moved: list
    changed: bool
    before: dict
    after: dict
    written: bool = False
    backup_file: str | None = None


def _is_int(value):
    # bool is an int subclass, but true/false is never a port
    return isinstance(value, int) and not isinstance(value, bool)


def entry_label(name, forward):
    """The "name/forward" form used in added, released and moved."""
    return f"{name}/{forward}"


# --- validation -------------------------------------------------------------


def validate_range(range_start, range_end):
    """Reject a range that is not two ints within 1024-65535, lowest first."""
    for option, value in (("range_start", range_start), ("range_end", range_end)):
        if not _is_int(value):
            raise PortRegistryError(f"{option} must be an integer, got {value!r}")
    if range_start > range_end:
        raise PortRegistryError(
            f"range_start ({range_start}) is greater than range_end ({range_end}): "
            "swap them so that range_start is the lowest port of the range "
            "(revtunnel_port_range_start, revtunnel_port_range_end)"
        )
    if range_start < PORT_FLOOR or range_end > PORT_CEILING:
        raise PortRegistryError(
            f"port range {range_start}-{range_end} is outside {PORT_FLOOR}-{PORT_CEILING}: "
            "choose unprivileged ports, for example 10000-10999 "
            "(revtunnel_port_range_start, revtunnel_port_range_end)"
        )


def validate_spoke_name(name, where):
    """Reject names that cannot key the registry or appear in "name/forward"."""
    if not isinstance(name, str) or not name.strip():
        raise PortRegistryError(f"{where} has an empty name: give every spoke its inventory name")
    if name != name.strip() or any(ch.isspace() for ch in name):
        raise PortRegistryError(f"{where} name {name!r} contains whitespace: use the inventory name without spaces")
    if "/" in name or not name.isprintable():
        raise PortRegistryError(
            f"{where} name {name!r} contains '/' or a control character: use the inventory name"
        )


def validate_forward_name(forward, where):
    """Forward names become parts of unit and file names, so keep them plain."""
    if not isinstance(forward, str) or not _FORWARD_RE.match(forward):
        raise PortRegistryError(
            f"{where} has a bad forward name {forward!r}: use lowercase letters, digits, "
            "'_' and '-', starting with a letter or a digit (for example 'rdp' or 'web-ui')"
        )


def normalize_spokes(spokes, range_start, range_end):
    """Validate the ``spokes`` option and return SpokeRequest objects in input order."""
    if not isinstance(spokes, (list, tuple)):
        raise PortRegistryError(f"spokes must be a list of dicts with a 'name', got {type(spokes).__name__}")
    requests = []
    seen_names = {}
    pinned_by = {}
    for index, spoke in enumerate(spokes, start=1):
        where = f"spoke #{index}"
        if not isinstance(spoke, dict):
            raise PortRegistryError(f"{where} must be a dict with a 'name', got {spoke!r}")
        unknown = sorted(set(spoke) - _SPOKE_KEYS)
        if unknown:
            raise PortRegistryError(
                f"{where} has unknown key(s) {', '.join(unknown)}: allowed are name, port, forwards"
            )
        name = spoke.get("name")
        validate_spoke_name(name, where)
        if name in seen_names:
            raise PortRegistryError(
                f"spoke name {name!r} is listed twice (#{seen_names[name]} and #{index}): list each spoke once"
            )
        seen_names[name] = index
        where = f"spoke {name!r}"

        forwards_in = spoke.get("forwards")
        if forwards_in is None:
            forwards_in = [PRIMARY_FORWARD]
        if not isinstance(forwards_in, (list, tuple)):
            raise PortRegistryError(f"{where}: forwards must be a list of names, got {forwards_in!r}")
        seen_forwards = set()
        for forward in forwards_in:
            validate_forward_name(forward, where)
            if forward in seen_forwards:
                raise PortRegistryError(f"{where} lists forward {forward!r} twice: list each forward once")
            seen_forwards.add(forward)
        forwards = (PRIMARY_FORWARD,) + tuple(f for f in forwards_in if f != PRIMARY_FORWARD)

        pin = spoke.get("port")
        if pin is not None:
            if not _is_int(pin):
                raise PortRegistryError(f"{where}: port must be an integer, got {pin!r}")
            if not range_start <= pin <= range_end:
                raise PortRegistryError(
                    f"port {pin} pinned for {name} is outside the port range {range_start}-{range_end}: "
                    "pin a port inside the range or widen the range (revtunnel_port, "
                    "revtunnel_port_range_start, revtunnel_port_range_end)"
                )
            if pin in pinned_by:
                raise PortRegistryError(
                    f"port {pin} is pinned for both {pinned_by[pin]} and {name}: "
                    "pin each port for one spoke only (revtunnel_port)"
                )
            pinned_by[pin] = name
        requests.append(SpokeRequest(name=name, forwards=forwards, pin=pin))
    return requests


# --- listening sockets --------------------------------------------------------


def parse_listening_ports(text):
    """Ports of LISTEN sockets (state 0A, any local address) in /proc/net/tcp{,6} text."""
    ports = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _TCP_STATE_LISTEN:
            continue
        _address, _sep, port_hex = fields[1].rpartition(":")
        try:
            ports.add(int(port_hex, 16))
        except ValueError:
            continue
    return ports


def read_listening_ports(paths=PROC_NET_TCP_PATHS):
    """Read LISTEN ports from the kernel tables; tcp6 may be absent when IPv6 is off."""
    ports = set()
    read_any = False
    for path in paths:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                ports |= parse_listening_ports(handle.read())
        except FileNotFoundError:
            continue
        read_any = True
    if not read_any:
        raise PortRegistryError(
            f"cannot read listening sockets from {', '.join(paths)}: this module needs a Linux host with /proc"
        )
    return ports


# --- registry load and serialize ----------------------------------------------


def _untouched_hint(path):
    return f"the file was left untouched: restore it from {path}.bak or move it aside to start a new registry"


def load_document(raw, path):
    """Parse registry bytes into a dict of a readable version; raise on anything else."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PortRegistryError(f"registry {path} is not valid JSON ({exc}); {_untouched_hint(path)}") from exc
    if not isinstance(data, dict) or "version" not in data:
        raise PortRegistryError(f"registry {path} is not a port registry (no 'version' key); {_untouched_hint(path)}")
    version = data["version"]
    if not _is_int(version) or version not in READABLE_VERSIONS:
        raise PortRegistryError(
            f"registry {path} has format version {version!r} but this collection reads version 1 or 2 only; "
            "upgrade hubspoke.revtunnel, or move the file aside to start a new registry "
            "(the file was left untouched)"
        )
    return data


def stored_range_of(data):
    """The informational {"start", "end"} of a parsed registry, or None."""
    stored_range = data.get("range")
    if isinstance(stored_range, dict):
        return {"start": stored_range.get("start"), "end": stored_range.get("end")}
    return None


def ports_of_document(data, path):
    """{spoke: {forward: port}} of a version 1 or 2 document, validated; ports are unique."""
    if data["version"] == REGISTRY_VERSION_V1:
        ports_in = data.get("ports")
        if not isinstance(ports_in, dict):
            raise PortRegistryError(f"registry {path} has no 'ports' object; {_untouched_hint(path)}")
    else:
        spokes_in = data.get("spokes")
        if not isinstance(spokes_in, dict):
            raise PortRegistryError(f"registry {path} has no 'spokes' object; {_untouched_hint(path)}")
        ports_in = {}
        for name, entry in spokes_in.items():
            if not isinstance(entry, dict):
                raise PortRegistryError(
                    f"registry {path}: entry {name!r} must be an object with 'ports'; {_untouched_hint(path)}"
                )
            ports_in[name] = entry.get("ports")
    ports = {}
    owner = {}
    for name, forwards in ports_in.items():
        where = f"registry {path}: entry {name!r}"
        try:
            validate_spoke_name(name, where)
            if not isinstance(forwards, dict) or not forwards:
                raise PortRegistryError(f"{where} must map forward names to ports")
            for forward, port in forwards.items():
                validate_forward_name(forward, where)
                if not _is_int(port) or not 1 <= port <= PORT_CEILING:
                    raise PortRegistryError(f"{where} has port {port!r} for {forward!r}, not a TCP port")
                label = entry_label(name, forward)
                if port in owner:
                    raise PortRegistryError(f"registry {path} gives port {port} to both {owner[port]} and {label}")
                owner[port] = label
        except PortRegistryError as exc:
            raise PortRegistryError(f"{exc}; {_untouched_hint(path)}") from None
        ports[name] = dict(forwards)
    return ports


def parse_registry(raw, path):
    """Parse registry bytes (version 1 or 2) into (ports map, stored range or None)."""
    data = load_document(raw, path)
    return ports_of_document(data, path), stored_range_of(data)


def read_registry(path):
    """Return the registry bytes, or None when there is no registry yet."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def format_ports(ports):
    """JSON of a ports map, one spoke per line, sorted: small files and one-line diffs."""
    if not ports:
        return "{}"
    lines = [
        f"  {json.dumps(name)}: {json.dumps(ports[name], sort_keys=True)}" for name in sorted(ports)
    ]
    return "{\n" + ",\n".join(lines) + "\n}"


def serialize_registry(ports, range_start, range_end, updated):
    """A version 1 registry file, as collection versions before the spoke registry wrote it.

    Nothing writes version 1 any more (see _spoke_registry.serialize_document); this stays so
    that tests and tools can make the file an upgrade starts from.
    """
    body = format_ports(ports).replace("\n", "\n  ")
    text = (
        "{\n"
        f'  "version": {REGISTRY_VERSION_V1},\n'
        f'  "range": {{"start": {range_start}, "end": {range_end}}},\n'
        f'  "updated": {json.dumps(updated)},\n'
        f'  "ports": {body}\n'
        "}\n"
    )
    return text.encode("utf-8")


def utc_timestamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- allocation ----------------------------------------------------------------


def plan_allocation(current, requests, range_start, range_end, listening, prune):
    """Give every requested entry a port, keeping existing ones; O(n log n).

    ``current`` is the registry map, ``requests`` come from normalize_spokes,
    ``listening`` is the set of ports with a LISTEN socket on the host.
    Raises PortRegistryError on a pin conflict or when the range is too small.
    """
    wanted = {req.name: req for req in requests}
    final = {}
    owner = {}  # port -> "name/forward" of every entry whose port is settled
    existing = {}  # (name, forward) -> port, for listed entries already registered
    released = []

    for name, forwards in current.items():
        req = wanted.get(name)
        for forward, port in forwards.items():
            if req is not None and forward in req.forwards:
                existing[(name, forward)] = port
            elif prune:
                released.append((name, forward))
            else:
                # unlisted and kept verbatim: not ours to move this run
                final.setdefault(name, {})[forward] = port
                owner[port] = entry_label(name, forward)

    # listed entries that keep their port, unless a pin moves them
    pinned = {(req.name, PRIMARY_FORWARD): req.pin for req in requests if req.pin is not None}
    for key, port in existing.items():
        if key not in pinned and range_start <= port <= range_end:
            final.setdefault(key[0], {})[key[1]] = port
            owner[port] = entry_label(*key)

    for (name, forward), pin in sorted(pinned.items()):
        label = entry_label(name, forward)
        if pin in owner:
            raise PortRegistryError(
                f"port {pin} pinned for {name} is registered to {owner[pin]}: "
                f"pin another port for {name} (revtunnel_port), or release or re-pin {owner[pin]} first"
            )
        if pin in listening and existing.get((name, forward)) != pin:
            raise PortRegistryError(
                f"port {pin} pinned for {name} is already in use on this host by another program "
                "(a LISTEN socket that is not this spoke's tunnel): pin a free port (revtunnel_port) "
                "or stop that program"
            )
        final.setdefault(name, {})[forward] = pin
        owner[pin] = label

    # entries still without a port, in a fixed order so input order never matters
    needing = sorted(
        (req.name, index, forward)
        for req in requests
        for index, forward in enumerate(req.forwards)
        if forward not in final.get(req.name, {})
    )
    taken = {port for port in owner if range_start <= port <= range_end}
    busy = {port for port in listening if range_start <= port <= range_end} - taken
    size = range_end - range_start + 1
    free = size - len(taken) - len(busy)
    if len(needing) > free:
        count = "1 entry needs" if len(needing) == 1 else f"{len(needing)} entries need"
        raise PortRegistryError(
            f"port range {range_start}-{range_end} is too small: {count} a new port "
            f"({len(taken) + len(needing)} ports needed in all) but only {free} of its {size} ports are free "
            f"({len(taken)} registered, {len(busy)} in use by other programs); widen the range "
            "(revtunnel_port_range_start, revtunnel_port_range_end), or release unlisted entries with prune"
        )

    added = []
    moved = []
    candidate = range_start
    for name, _index, forward in needing:
        while candidate in taken or candidate in busy:
            candidate += 1
        final.setdefault(name, {})[forward] = candidate
        old = existing.get((name, forward))
        if old is None:
            added.append((name, forward))
        else:
            moved.append({"entry": entry_label(name, forward), "from": old, "to": candidate})
        candidate += 1

    for (name, forward), pin in pinned.items():
        old = existing.get((name, forward))
        if old is None:
            added.append((name, forward))
        elif old != pin:
            moved.append({"entry": entry_label(name, forward), "from": old, "to": pin})

    return Plan(
        ports={name: dict(sorted(final[name].items())) for name in sorted(final)},
        added=[entry_label(*key) for key in sorted(added)],
        released=[entry_label(*key) for key in sorted(released)],
        moved=sorted(moved, key=lambda item: item["entry"]),
    )


# --- storage -------------------------------------------------------------------


def ensure_parent_dir(path, mode=DIR_MODE):
    """Create missing parent directories with ``mode``, 0750 by default (not subject to umask)."""
    parent = os.path.dirname(os.path.abspath(path))
    missing = []
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", directory) from None
            continue  # another run made it between our check and mkdir
        os.chmod(directory, mode)


def _fsync_dir(directory):
    # a rename is only durable once the directory entry itself reaches the disk
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_prefix(path):
    return "." + os.path.basename(path) + "."


def remove_stale_temp_files(path):
    """Remove temp files left by a run that died mid-write; call only under the lock."""
    directory = os.path.dirname(os.path.abspath(path))
    base_prefix = _temp_prefix(path)
    for entry in os.listdir(directory):
        if entry.startswith(base_prefix) and entry.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, entry))


def atomic_write(path, data, like=None, mode=FILE_MODE, owner=None):
    """Write bytes to path through a temp file in the same directory, fsync, os.replace.

    ``like`` is an os.stat_result whose owner the new file takes (best effort);
    ``owner`` is a (uid, gid) that wins over ``like``. The caller fsyncs the directory afterwards.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp_path = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=directory)
    if owner is None and like is not None:
        owner = (like.st_uid, like.st_gid)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                with contextlib.suppress(PermissionError):
                    os.fchown(handle.fileno(), *owner)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


def write_registry(path, data, previous=None):
    """Keep ``previous`` bytes as <path>.bak, then replace the registry atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    like = None
    with contextlib.suppress(FileNotFoundError):
        like = os.stat(path)
    backup_file = None
    if previous is not None:
        backup_file = path + ".bak"
        atomic_write(backup_file, previous, like=like)
    atomic_write(path, data, like=like)
    _fsync_dir(directory)
    return backup_file


@contextlib.contextmanager
def registry_lock(path, timeout=LOCK_TIMEOUT):
    """Hold an exclusive flock on <path>.lock; the lock file is never removed."""
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PortRegistryError(
                        f"another run has held the registry lock {lock_path} for over {timeout:.0f} s: "
                        f"wait for it to finish, or find the process holding it with: fuser -v {lock_path}"
                    ) from None
                time.sleep(0.02)
        yield lock_path
    finally:
        # closing the descriptor releases the flock
        os.close(fd)


# --- the ports-only entry point -------------------------------------------------------


def allocate_ports(path=DEFAULT_PATH, spokes=(), range_start=DEFAULT_RANGE_START, range_end=DEFAULT_RANGE_END,
                   prune=False, check_mode=False, listening_ports=None, proc_net_paths=PROC_NET_TCP_PATHS,
                   lock_timeout=LOCK_TIMEOUT, updated=None):
    """Validate, allocate under the registry lock, and write the registry if it changed.

    The ports-only view of ``_spoke_registry.sync_registry``: the registry is written as
    version 2, the keys it holds are kept, authorized_keys is not touched.
    In check mode nothing is created or written and no lock is taken (writers
    replace the file atomically, so an unlocked read still sees a whole file).
    ``listening_ports`` overrides reading ``proc_net_paths``; ``updated``
    overrides the timestamp. Raises PortRegistryError for bad input and OSError
    for I/O failures.
    """
    # imported here: _spoke_registry imports this file at its top
    from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _spoke_registry

    validate_range(range_start, range_end)
    requests = normalize_spokes(spokes, range_start, range_end)
    outcome = _spoke_registry.run_transaction(
        path, _spoke_registry.Request(spokes=tuple(requests)), range_start=range_start, range_end=range_end,
        prune=prune, check_mode=check_mode, listening_ports=listening_ports, proc_net_paths=proc_net_paths,
        lock_timeout=lock_timeout, updated=updated,
    )
    return AllocationResult(
        path=outcome.path, ports=outcome.ports, added=outcome.added, released=outcome.released,
        moved=outcome.moved, changed=outcome.registry_changed, before=outcome.ports_before,
        after=outcome.ports, written=outcome.written, backup_file=outcome.backup_file,
    )
