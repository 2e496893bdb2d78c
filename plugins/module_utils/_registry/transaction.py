# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One locked run of the registry: read, allocate, record keys, restore, prune, write, render authorized_keys.

``sync_registry`` is the module spoke_registry, ``allocate_ports`` its ports-only view (the module
port_allocation): both validate every input first (request.prepare_request), then run one transaction under
the registry's lock. In check mode nothing is created, not even the directory or the lock, and the files are
read without the lock (writers replace them by rename, so a read always sees a whole file).
"""

from __future__ import annotations

import grp
import os
from dataclasses import dataclass, field, replace

from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs, _procfs, _rules
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import allocation, document, storage
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import authorized_keys as _keys
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import request as _request
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.document import RegistryError

DEFAULT_PATH = document.DEFAULT_PATH
DEFAULT_AUTHORIZED_KEYS = "/etc/ssh/revtunnel/authorized_keys"


@dataclass
class RegistryResult:
    """What one run did (or, in check mode, would do)."""

    path: str
    ports: dict
    spokes: dict
    ports_before: dict
    added: list = field(default_factory=list)
    released: list = field(default_factory=list)
    moved: list = field(default_factory=list)
    keys_added: list = field(default_factory=list)
    keys_removed: list = field(default_factory=list)
    imported: list = field(default_factory=list)
    restored: list = field(default_factory=list)
    registry_changed: bool = False
    authorized_keys: str | None = None
    authorized_keys_changed: bool = False
    registry_before: str = ""
    registry_after: str = ""
    authorized_keys_before: str = ""
    authorized_keys_after: str = ""
    written: bool = False
    backup_file: str | None = None
    range: dict | None = None
    listeners: dict = field(default_factory=dict)

    @property
    def changed(self):
        return self.registry_changed or self.authorized_keys_changed


def _key_labels(spokes_a, spokes_b):
    """"spoke SHA256:fp" of every key in a and not in b, sorted."""
    labels = []
    for name, entry in spokes_a.items():
        others = spokes_b.get(name)
        other_keys = set(others["keys"]) if others else set()
        labels.extend(f"{name} {document.key_fingerprint(key)}" for key in entry["keys"] if key not in other_keys)
    return sorted(labels)


def _apply_changes(spokes, request):
    """Trust and forget on the synced spokes; the final key set of a spoke is checked once."""
    trust, forget = {}, {}
    current = dict(request.current)
    for name, key in request.trust:
        trust.setdefault(name, []).append(key)
    for name, key in request.forget:
        forget.setdefault(name, []).append(key)
    for name in sorted(set(trust) | set(forget)):
        entry = spokes.get(name)
        if entry is None:
            if name in trust:
                raise RegistryError(
                    f"trust: spoke {name} is not in the registry: run the full sync with the spoke listed "
                    "before trusting a new key for it"
                )
            continue  # forgetting a key of a spoke that is gone is already done
        if set(trust.get(name, ())) & set(forget.get(name, ())):
            raise RegistryError(f"spoke {name}: one key is both in trust and in forget: give it to one of them")
        dropped = set(forget.get(name, ()))
        keys = [key for key in entry["keys"] if key not in dropped]
        if name in current:
            # the spoke holds this key now: any other key (a cut-short rotation's) goes
            keys = [current[name]]
        keys.extend(key for key in dict.fromkeys(trust.get(name, ())) if key not in keys)
        if len(keys) > _rules.MAX_SPOKE_KEYS:
            raise RegistryError(
                f"spoke {name} would trust {len(keys)} keys but holds at most {_rules.MAX_SPOKE_KEYS} (the old and "
                "the new one during a rotation): forget the old key before trusting another"
            )
        if not keys and entry["keys"]:
            raise RegistryError(
                f"spoke {name}: forget would remove its last trusted key, which would lock it out: "
                "trust the new key first, or remove the spoke from the inventory and prune"
            )
        entry["keys"] = keys


def _check_one_spoke_per_key(spokes):
    owner = {}
    for name in sorted(spokes):
        for key in spokes[name]["keys"]:
            if key in owner:
                raise RegistryError(
                    f"the key {document.key_fingerprint(key)} is trusted for both {owner[key]} and {name}: sshd "
                    f"would only ever use the first line, so a key belongs to one spoke; give {name} a key of its own"
                )
            owner[key] = name


def _check_required_keys(spokes, required, restore_given):
    """Refuse a run that would leave a spoke it did not reach without any key: it could never log in again."""
    missing = sorted(name for name in required if name in spokes and not spokes[name]["keys"])
    if not missing:
        return
    copy = ("the controller's copy of this hub's records has none either" if restore_given
            else "no controller copy of this hub's records was given")
    raise RegistryError(
        f"spoke(s) {', '.join(missing)} would be left without a trusted key on this hub: this run did not reach "
        f"them, the hub's registry holds no key for them and {copy}, so their tunnels could not log in. Nothing "
        "was changed. Recover by restoring the controller copy (revtunnel_hub_records_dir) from your backup or "
        "version control, or by running site.yml so that it reaches these spokes (switch them on, or fix how "
        "Ansible reaches them); a spoke that never had a tunnel can wait with revtunnel_state: absent"
    )


def _listening(check_mode, listening_ports, proc_net_paths):
    """{port: listening socket inodes} of the host; LISTENING_PORTS (tests, bench) stands in with no inodes."""
    if listening_ports is not None:
        return {port: [] for port in listening_ports}
    try:
        table = _procfs.listeners(proc_net_paths, required=True)
    except FileNotFoundError as exc:
        if check_mode:
            return {}  # a preflight off the hub cannot see its sockets; the real run checks them
        raise RegistryError(f"{exc}: this module needs a Linux host with /proc") from None
    return {port: sorted({sock.inode for sock in socks}) for port, socks in table.items()}


def _read_file(path, what):
    if os.path.isdir(path):
        raise RegistryError(f"{what} {path} is a directory: give a file path")
    return _fs.read_bytes(path)


def _restore(current, restore, result):
    """current with the controller copy's entries for the spokes it lacks (or the keys an entry lacks).

    The registry wins wherever it holds something: it is what sshd enforces now, written under the lock,
    possibly by a run the copy never saw. A restored port that the registry gives to another spoke is
    dropped, so that forward gets a new port.
    """
    if not restore:
        return current
    merged = {name: {"ports": dict(e["ports"]), "keys": list(e["keys"]), "key_from": list(e["key_from"])}
              for name, e in current.items()}
    owner = {port for entry in merged.values() for port in entry["ports"].values()}
    for name, entry in restore:
        have = merged.get(name)
        if have is None:
            ports = {forward: port for forward, port in entry["ports"].items() if port not in owner}
            owner.update(ports.values())
            merged[name] = {"ports": ports, "keys": list(entry["keys"]), "key_from": list(entry["key_from"])}
            result.restored.append(name)
        elif not have["keys"] and entry["keys"]:
            have["keys"] = list(entry["keys"])
            result.restored.append(name)
    return merged


def _transaction(path, request, range_start, range_end, prune, check_mode, listening_ports, proc_net_paths,
                 updated, authorized_keys, require_keys, authorized_keys_gid):
    raw = _read_file(path, "path")
    if raw is None:
        version, current, stored_range = document.REGISTRY_VERSION, {}, None
    else:
        parsed = document.parse(raw, path)
        version, current, stored_range = parsed.version, parsed.spokes, parsed.range
    range_before = stored_range
    keys_raw = _read_file(authorized_keys, "authorized_keys") if authorized_keys else None

    result = RegistryResult(path=path, ports={}, spokes={},
                            ports_before={n: dict(e["ports"]) for n, e in current.items()})
    base = _restore(current, request.restore, result)
    spokes = {name: {"ports": dict(e["ports"]), "keys": list(e["keys"]), "key_from": list(e["key_from"])}
              for name, e in base.items()}
    if request.spokes is not None:
        listening = _listening(check_mode, listening_ports, proc_net_paths)
        plan = allocation.plan_allocation({name: e["ports"] for name, e in base.items()}, request.spokes,
                                          range_start, range_end, set(listening), prune)
        result.added, result.released, result.moved = plan.added, plan.released, plan.moved
        wanted = {spoke.name: spoke for spoke in request.spokes}
        synced = {}
        for name, ports in plan.ports.items():
            entry = spokes.get(name) or {"keys": [], "key_from": []}
            spoke = wanted.get(name)
            keys, key_from = entry["keys"], entry["key_from"]
            # The key the spoke holds becomes its only key, unless it is already trusted: then the pair of a
            # rotation in progress (possibly another run's, under way right now) stays until its "forget".
            if spoke is not None and spoke.key is not None and spoke.key not in keys:
                keys = [spoke.key]
            if spoke is not None and spoke.key_from is not None:
                key_from = list(spoke.key_from)
            synced[name] = {"ports": ports, "keys": keys, "key_from": key_from}
        spokes = synced
        stored_range = {"end": range_end, "start": range_start}
    result.restored = sorted(name for name in result.restored if name in spokes)

    # one-time import: at the upgrade (v1, or a file not generated yet) or when the registry was lost
    if keys_raw is not None and (raw is None or version == 1 or not keys_raw.startswith(_keys.GENERATED_MARK.encode())):
        given = {spoke.name for spoke in request.spokes or () if spoke.key is not None}
        owned = {key for entry in spokes.values() for key in entry["keys"]}
        for name, keys in _keys.keys_by_spoke(keys_raw.decode("utf-8", "replace")).items():
            entry = spokes.get(name)
            # best effort: a key that another spoke already holds is not imported twice
            keys = [key for key in keys if key not in owned][:_rules.MAX_SPOKE_KEYS]
            if entry is not None and not entry["keys"] and name not in given and keys:
                entry["keys"] = keys
                owned.update(keys)
                result.imported.append(name)

    _apply_changes(spokes, request)
    _check_one_spoke_per_key(spokes)
    _check_required_keys(spokes, require_keys or (), bool(request.restore))

    result.spokes = {name: spokes[name] for name in sorted(spokes)}
    result.ports = {name: dict(sorted(entry["ports"].items())) for name, entry in result.spokes.items()}
    result.keys_added = _key_labels(spokes, current)
    result.keys_removed = _key_labels(current, spokes)
    result.range = stored_range
    if (request.spokes is not None or request.trust) and not check_mode:
        # A trust starts a key rotation: its spokes' listeners tell the session of the new key from the old one's.
        if request.spokes is None:
            listening = _listening(check_mode, listening_ports, proc_net_paths)
        named = spokes if request.spokes is not None else {name: spokes[name] for name, _key in request.trust}
        result.listeners = {str(port): listening[port] for entry in named.values()
                            for port in entry["ports"].values() if listening.get(port)}

    if raw is None:
        result.registry_changed = request.spokes is not None or bool(spokes)
    else:
        result.registry_changed = (version != document.REGISTRY_VERSION or current != spokes
                                   or stored_range != range_before)
    result.registry_before = raw.decode("utf-8", "replace") if raw is not None else ""
    new_data = None
    if result.registry_changed:
        new_data = document.serialize(spokes, stored_range, updated or document.utc_timestamp())
        result.registry_after = new_data.decode("utf-8")
    else:
        result.registry_after = result.registry_before

    keys_data = None
    keys_mended = False
    if authorized_keys:
        result.authorized_keys = authorized_keys
        keys_data = _keys.render(spokes, path)
        result.authorized_keys_before = keys_raw.decode("utf-8", "replace") if keys_raw is not None else ""
        result.authorized_keys_after = keys_data.decode("utf-8")
        keys_mended = keys_raw == keys_data and _keys.attributes_differ(authorized_keys, authorized_keys_gid)
        result.authorized_keys_changed = keys_raw != keys_data or keys_mended

    if check_mode:
        return result
    if new_data is not None:
        _fs.remove_stale_temps(path)
        result.backup_file = storage.write(path, new_data, previous=raw)
        result.written = True
    if result.authorized_keys_changed and not keys_mended:
        _keys.write(authorized_keys, keys_data, authorized_keys_gid)
    elif keys_mended:
        _keys.mend(authorized_keys, authorized_keys_gid)
    return result


def _check_path(path, option, example):
    if not path or not isinstance(path, str):
        raise RegistryError(f"{option} must be a file path, got {path!r}")
    if os.path.isdir(path):
        raise RegistryError(f"{option} {path} is a directory: give a file, for example {example}")


def run_transaction(path, request, range_start=None, range_end=None, prune=False, check_mode=False,
                    authorized_keys=None, listening_ports=None, proc_net_paths=None, lock_timeout=None,
                    updated=None, require_keys=(), authorized_keys_gid=None):
    """The locked run of a validated ``request`` (request.prepare_request)."""
    range_start = _request.DEFAULT_RANGE_START if range_start is None else range_start
    range_end = _request.DEFAULT_RANGE_END if range_end is None else range_end
    proc_net_paths = _procfs.PROC_NET_TCP if proc_net_paths is None else proc_net_paths
    lock_timeout = storage.LOCK_TIMEOUT if lock_timeout is None else lock_timeout
    _check_path(path, "path", DEFAULT_PATH)
    if authorized_keys is not None:
        _check_path(authorized_keys, "authorized_keys", DEFAULT_AUTHORIZED_KEYS)
        if os.path.abspath(authorized_keys) == os.path.abspath(path):
            raise RegistryError(f"authorized_keys and path are both {path}: give them different files")
    args = (path, request, range_start, range_end, prune, check_mode, listening_ports, proc_net_paths,
            updated, authorized_keys, tuple(require_keys or ()), authorized_keys_gid)
    if check_mode:
        return _transaction(*args)
    _fs.ensure_parents(path, storage.DIR_MODE)
    with storage.lock(path, timeout=lock_timeout):
        return _transaction(*args)


def sync_registry(path=DEFAULT_PATH, spokes=None, trust=None, forget=None, authorized_keys=None,
                  range_start=None, range_end=None, prune=False, check_mode=False, restore=None,
                  require_keys=None, authorized_keys_group=None, **internal):
    """The module spoke_registry: validate every input, then one locked transaction.

    ``internal`` passes listening_ports, proc_net_paths, lock_timeout and updated (tests, bench).
    Raises RuleError (RegistryError) for bad input or registry, OSError for I/O failures.
    """
    request = _request.prepare_request(spokes, trust, forget, range_start, range_end, restore=restore)
    for name in require_keys or ():
        _rules.inventory_name(name, "require_keys")
    gid = None
    if authorized_keys_group is not None:
        try:
            gid = grp.getgrnam(_rules.account(authorized_keys_group, "authorized_keys_group", False)).gr_gid
        except KeyError:
            if not check_mode:
                raise RegistryError(f"authorized_keys_group {authorized_keys_group!r} does not exist on this host: "
                                    "create the tunnel account first") from None
    return run_transaction(path, request, range_start=range_start, range_end=range_end, prune=prune,
                           check_mode=check_mode, authorized_keys=authorized_keys, require_keys=require_keys,
                           authorized_keys_gid=gid, **internal)


@dataclass
class AllocationResult:
    """What a ports-only run did (or, in check mode, would do) to the registry."""

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


def allocate_ports(path=DEFAULT_PATH, spokes=(), range_start=_request.DEFAULT_RANGE_START,
                   range_end=_request.DEFAULT_RANGE_END, prune=False, check_mode=False, **internal):
    """The module port_allocation: sync_registry's ports only; the keys the registry holds are kept and
    authorized_keys is not touched."""
    _rules.port_range(range_start, range_end)
    # key and key_from None: the registry's keys and patterns stay as they are
    listed = _request.normalize_spokes(spokes, range_start, range_end)
    request = _request.Request(spokes=tuple(replace(spoke, key=None, key_from=None) for spoke in listed))
    outcome = run_transaction(path, request, range_start=range_start, range_end=range_end, prune=prune,
                              check_mode=check_mode, **internal)
    return AllocationResult(
        path=outcome.path, ports=outcome.ports, added=outcome.added, released=outcome.released,
        moved=outcome.moved, changed=outcome.registry_changed, before=outcome.ports_before,
        after=outcome.ports, written=outcome.written, backup_file=outcome.backup_file,
    )
