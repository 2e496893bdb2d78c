# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the spoke registry writer: registry v2, keys, authorized_keys, migration."""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import multiprocessing
import os
import shutil
import stat
import struct
import subprocess
import time

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils import _fs
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry import authorized_keys, document, transaction
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._registry.transaction import sync_registry
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._rules import RuleError

Error = RuleError


def make_key(seed, key_type="ssh-ed25519", comment="revtunnel@spoke"):
    """A well-formed public key line whose key data is derived from seed (no ssh-keygen needed)."""
    type_bytes = key_type.encode()
    blob = struct.pack(">I", len(type_bytes)) + type_bytes + struct.pack(">I", 32)
    blob += hashlib.sha256(seed.encode()).digest()
    line = f"{key_type} {base64.b64encode(blob).decode()}"
    return f"{line} {comment}" if comment else line


def bare(key):
    """The registry's form of a key line: no comment."""
    return " ".join(key.split()[:2])


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "lib" / "ports.json", tmp_path / "ssh" / "authorized_keys"


def sync(paths, spokes=None, prune=True, start=10000, end=10999, **kwargs):
    registry, keys = paths
    kwargs.setdefault("listening_ports", set())
    kwargs.setdefault("authorized_keys", str(keys))
    return sync_registry(path=str(registry), spokes=spokes, range_start=start, range_end=end, prune=prune,
                         **kwargs)


def snapshot(*files):
    """Bytes, inode and mtime of each file (None when absent), to prove a run left them alone."""
    shots = []
    for path in files:
        if not os.path.exists(path):
            shots.append(None)
            continue
        st = os.stat(path)
        with open(path, "rb") as handle:
            shots.append((handle.read(), st.st_ino, st.st_mtime_ns))
    return shots


def key_lines(keys_path):
    return [line for line in keys_path.read_text().splitlines() if not line.startswith("#")]


KEY_A, KEY_B, KEY_C, KEY_D = (make_key(seed) for seed in "abcd")


# --- migration from version 1 --------------------------------------------------------------


OLD_AUTHORIZED_KEYS = (
    "# Ansible managed\n"
    "# One line per spoke: its key may only listen on its own loopback ports of this hub.\n"
    f'restrict,port-forwarding,permitlisten="localhost:10000",permitopen="127.0.0.1:1" {bare(KEY_A)} lab-pc-1\n'
    f'restrict,port-forwarding,permitlisten="localhost:10001",permitlisten="localhost:10003",'
    f'permitopen="127.0.0.1:1" {bare(KEY_B)} lab-pc-2\n'
    f'restrict,port-forwarding,permitlisten="localhost:10004",permitopen="127.0.0.1:1" {bare(KEY_D)} gone-pc\n'
    "garbage line\n"
)


def write_v1(paths, ports):
    registry, keys = paths
    registry.parent.mkdir(parents=True, exist_ok=True)
    # a registry as every collection version before 1.0.0 wrote it
    registry.write_text(json.dumps({"version": 1, "range": {"start": 10000, "end": 10999},
                                    "updated": "2025-01-01T00:00:00Z", "ports": ports}, indent=2))
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text(OLD_AUTHORIZED_KEYS)


V1_PORTS = {"lab-pc-1": {"ssh": 10000}, "lab-pc-2": {"rdp": 10001, "ssh": 10003}, "lab-pc-3": {"ssh": 10002}}


def test_v1_registry_migrates_without_moving_a_port_and_imports_missing_keys(paths):
    registry, keys = paths
    write_v1(paths, V1_PORTS)
    assert json.loads(registry.read_text())["version"] == 1
    spokes = [
        {"name": "lab-pc-1", "key": KEY_C},  # key given in this run: it wins over the old file
        {"name": "lab-pc-2", "forwards": ["rdp"]},  # unreachable: its key comes from the old file
        {"name": "lab-pc-3"},  # no line in the old file: no key yet
        {"name": "lab-pc-4", "key": KEY_D.replace("revtunnel@spoke", "x")},
    ]
    # gone-pc's old line holds KEY_D, now given to lab-pc-4: not imported, since gone-pc is not in the registry
    result = sync(paths, spokes)
    assert result.changed and result.registry_changed and result.authorized_keys_changed
    assert result.ports == {**V1_PORTS, "lab-pc-4": {"ssh": 10004}}
    assert result.added == ["lab-pc-4/ssh"] and result.moved == [] and result.released == []
    assert result.imported == ["lab-pc-2"]
    assert result.spokes["lab-pc-1"]["keys"] == [bare(KEY_C)]
    assert result.spokes["lab-pc-2"]["keys"] == [bare(KEY_B)]
    assert result.spokes["lab-pc-3"]["keys"] == []
    on_disk = json.loads(registry.read_text())
    assert on_disk["version"] == 2
    assert {name: entry["ports"] for name, entry in on_disk["spokes"].items()} == result.ports
    assert json.loads((registry.parent / "ports.json.bak").read_text())["version"] == 1
    lines = key_lines(keys)
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["lab-pc-1", "lab-pc-2", "lab-pc-4"]
    assert f'permitlisten="localhost:10001",permitlisten="localhost:10003",permitopen="127.0.0.1:1" {bare(KEY_B)}' \
        in lines[1]
    assert keys.read_text().startswith(authorized_keys.GENERATED_MARK)

    # the next run changes nothing, and never imports again
    before = snapshot(registry, keys)
    again = sync(paths, spokes)
    assert not again.changed and again.imported == []
    assert snapshot(registry, keys) == before


def test_v1_migration_in_check_mode_reports_and_writes_nothing(paths):
    registry, keys = paths
    write_v1(paths, V1_PORTS)
    before = snapshot(registry, keys)
    files_before = sorted(os.listdir(registry.parent))
    result = sync(paths, [{"name": "lab-pc-1"}, {"name": "lab-pc-2", "forwards": ["rdp"]}], prune=False,
                  check_mode=True)
    assert result.changed and not result.written
    assert result.imported == ["lab-pc-1", "lab-pc-2"]
    assert '"version": 2' in result.registry_after
    assert snapshot(registry, keys) == before
    assert sorted(os.listdir(registry.parent)) == files_before


def test_a_lost_registry_gets_the_keys_back_from_authorized_keys(paths):
    registry, keys = paths
    sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}])
    registry.unlink()
    result = sync(paths, [{"name": "a"}, {"name": "b", "key": KEY_C}])
    assert result.imported == ["a"]
    assert result.spokes["a"]["keys"] == [bare(KEY_A)] and result.spokes["b"]["keys"] == [bare(KEY_C)]


def test_import_skips_a_key_that_another_spoke_holds(paths):
    registry, keys = paths
    write_v1(paths, {"a": {"ssh": 10000}, "b": {"ssh": 10001}})
    keys.write_text(f"restrict {bare(KEY_A)} a\nrestrict {bare(KEY_A)} b\n")
    result = sync(paths, [{"name": "a"}, {"name": "b"}])
    assert result.imported == ["a"] and result.spokes["b"]["keys"] == []


def test_a_generated_authorized_keys_is_never_a_source_of_keys(paths):
    registry, keys = paths
    sync(paths, [{"name": "a"}])
    keys.write_text(f"{authorized_keys.GENERATED_MARK} by hand\nrestrict {bare(KEY_A)} a\n")
    result = sync(paths, [{"name": "a"}])
    assert result.imported == [] and result.spokes["a"]["keys"] == []
    assert result.authorized_keys_changed  # the hand edit is overwritten
    assert key_lines(keys) == []


def test_registry_written_by_port_allocation_still_gets_the_old_keys(paths):
    registry, keys = paths
    write_v1(paths, V1_PORTS)
    transaction.allocate_ports(path=str(registry), spokes=[{"name": n} for n in V1_PORTS], listening_ports=set())
    assert json.loads(registry.read_text())["version"] == 2
    result = sync(paths, [{"name": n} for n in V1_PORTS])
    assert result.imported == ["lab-pc-1", "lab-pc-2"]


def test_port_allocation_keeps_the_keys_and_patterns_of_a_v2_registry(paths):
    registry, _keys = paths
    sync(paths, [{"name": "a", "key": KEY_A, "key_from": ["192.0.2.0/24"]}, {"name": "b", "key": KEY_B}])
    listed = [{"name": "a", "forwards": ["ssh", "rdp"]}, {"name": "b"}]
    result = transaction.allocate_ports(path=str(registry), spokes=listed, listening_ports=set(), prune=True)
    assert result.changed and result.added == ["a/rdp"]
    spokes = document.read_spokes(str(registry))
    assert spokes["a"] == {"ports": {"rdp": 10002, "ssh": 10000}, "keys": [bare(KEY_A)], "key_from": ["192.0.2.0/24"]}
    assert spokes["b"]["keys"] == [bare(KEY_B)]


# --- keys ----------------------------------------------------------------------------------


def test_sync_replaces_keys_and_omitted_keys_are_kept(paths):
    first = sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}])
    assert first.keys_added == sorted(f"{n} {document.key_fingerprint(k)}" for n, k in (("a", KEY_A), ("b", KEY_B)))
    # b cannot be reached this run: no key given (or an empty one), it keeps its key
    second = sync(paths, [{"name": "a", "key": KEY_C}, {"name": "b", "key": ""}])
    assert second.spokes["a"]["keys"] == [bare(KEY_C)]
    assert second.spokes["b"]["keys"] == [bare(KEY_B)]
    assert second.keys_added == [f"a {document.key_fingerprint(KEY_C)}"]
    assert second.keys_removed == [f"a {document.key_fingerprint(KEY_A)}"]
    assert second.ports == first.ports


def test_trust_adds_forget_removes_a_full_rotation(paths):
    registry, keys = paths
    sync(paths, [{"name": "a", "key": KEY_A}])
    step1 = sync(paths, trust=[{"name": "a", "key": KEY_B}])
    assert step1.spokes["a"]["keys"] == [bare(KEY_A), bare(KEY_B)]
    assert step1.keys_added == [f"a {document.key_fingerprint(KEY_B)}"]
    assert [line.split()[-2] for line in key_lines(keys)] == [bare(KEY_A).split()[1], bare(KEY_B).split()[1]]
    assert not sync(paths, trust=[{"name": "a", "key": KEY_B}]).changed  # trusting twice is a no-op
    step2 = sync(paths, forget=[{"name": "a", "key": KEY_A}])
    assert step2.spokes["a"]["keys"] == [bare(KEY_B)]
    assert step2.keys_removed == [f"a {document.key_fingerprint(KEY_A)}"]
    assert len(key_lines(keys)) == 1
    assert not sync(paths, forget=[{"name": "a", "key": KEY_A}]).changed  # already forgotten
    # trust and forget alone never allocate: the range given is not even looked at
    assert document.read_spokes(str(registry))["a"]["ports"] == {"ssh": 10000}


def test_trust_and_forget_in_one_run_swap_the_only_key(paths):
    sync(paths, [{"name": "a", "key": KEY_A}])
    result = sync(paths, trust=[{"name": "a", "key": KEY_B}], forget=[{"name": "a", "key": KEY_A}])
    assert result.spokes["a"]["keys"] == [bare(KEY_B)]


@pytest.mark.parametrize(
    ("trust", "forget", "expected"),
    [
        ([{"name": "a", "key": KEY_C}], None, "spoke a would trust 3 keys but holds at most 2"),
        (None, [{"name": "a", "key": KEY_A}, {"name": "a", "key": KEY_B}], "spoke a: forget would remove its last"),
        ([{"name": "zz", "key": KEY_C}], None, "trust: spoke zz is not in the registry"),
        ([{"name": "a", "key": KEY_C}], [{"name": "a", "key": KEY_C}], "both in trust and in forget"),
        ([{"name": "b", "key": KEY_A}], None, "is trusted for both a and b"),
    ],
)
def test_key_rules_fail_before_writing(paths, trust, forget, expected):
    registry, keys = paths
    sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_D}])
    sync(paths, trust=[{"name": "a", "key": KEY_B}])
    before = snapshot(registry, keys)
    for check_mode in (True, False):
        with pytest.raises(Error) as err:
            sync(paths, trust=trust, forget=forget, check_mode=check_mode)
        assert expected in str(err.value)
    assert snapshot(registry, keys) == before


def test_forgetting_a_key_of_a_pruned_spoke_is_a_no_op(paths):
    sync(paths, [{"name": "a", "key": KEY_A}])
    assert not sync(paths, forget=[{"name": "gone", "key": KEY_B}]).changed


def test_one_key_cannot_serve_two_spokes_in_a_sync(paths):
    with pytest.raises(Error, match="is trusted for both a and b"):
        sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_A}])


def test_prune_drops_keys_too(paths):
    _registry, keys = paths
    sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}])
    result = sync(paths, [{"name": "a"}])
    assert result.released == ["b/ssh"]
    assert result.keys_removed == [f"b {document.key_fingerprint(KEY_B)}"]
    assert "b" not in result.spokes
    assert [line.rsplit(" ", 1)[1] for line in key_lines(keys)] == ["a"]


def test_without_prune_unlisted_spokes_keep_ports_and_keys(paths):
    sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}])
    result = sync(paths, [{"name": "a"}], prune=False)
    assert result.spokes["b"]["keys"] == [bare(KEY_B)] and result.released == []


def test_real_ssh_keygen_keys_are_accepted(tmp_path, paths):
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is not installed")
    lines = []
    for key_type in ("ed25519", "rsa", "ecdsa"):
        subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "me@pc", "-f", str(tmp_path / key_type)],
                       check=True)
        lines.append((tmp_path / f"{key_type}.pub").read_text().strip())
    result = sync(paths, [{"name": f"pc{i}", "key": line} for i, line in enumerate(lines)])
    for i, line in enumerate(lines):
        fingerprint = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / f"{('ed25519', 'rsa', 'ecdsa')[i]}.pub")],
                                     capture_output=True, text=True, check=True).stdout.split()[1]
        assert f"pc{i} {fingerprint}" in result.keys_added
        assert result.spokes[f"pc{i}"]["keys"] == [bare(line)]


# --- authorized_keys rendering ----------------------------------------------------------------


def test_authorized_keys_lines_ports_and_from(paths):
    _registry, keys = paths
    sync(paths, [
        {"name": "b", "key": KEY_B, "forwards": [{"name": "rdp", "port": 3389, "host": "localhost"}, "web"],
         "key_from": ["192.0.2.0/24", "2001:db8::/32", "!192.0.2.66", "*.lab.example.org"]},
        {"name": "a", "key": KEY_A},
        {"name": "c"},  # no key yet: no line
    ])
    text = keys.read_text()
    assert text.splitlines()[0].startswith(authorized_keys.GENERATED_MARK) and "do not edit" in text.splitlines()[0]
    assert key_lines(keys) == [
        f'restrict,port-forwarding,permitlisten="localhost:10000",permitopen="127.0.0.1:1" {bare(KEY_A)} a',
        # forwards in name order: rdp, ssh, web
        'restrict,port-forwarding,permitlisten="localhost:10002",permitlisten="localhost:10001",'
        'permitlisten="localhost:10003",permitopen="127.0.0.1:1",'
        f'from="192.0.2.0/24,2001:db8::/32,!192.0.2.66,*.lab.example.org" {bare(KEY_B)} b',
    ]
    st = os.stat(keys)
    assert stat.S_IMODE(st.st_mode) == 0o644
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, 0)


def test_authorized_keys_is_rewritten_only_when_its_content_changes(paths):
    registry, keys = paths
    sync(paths, [{"name": "a", "key": KEY_A}])
    before = snapshot(keys)
    time.sleep(0.01)
    # the registry changes (a new spoke without a key), the rendered file does not
    result = sync(paths, [{"name": "a"}, {"name": "b"}])
    assert result.registry_changed and not result.authorized_keys_changed
    assert snapshot(keys) == before
    # an edit by hand is put right
    keys.write_text(keys.read_text() + "ssh-ed25519 AAAA intruder\n")
    result = sync(paths, [{"name": "a"}, {"name": "b"}])
    assert result.authorized_keys_changed and not result.registry_changed
    assert "intruder" not in keys.read_text()
    registry_before = snapshot(registry)
    assert not sync(paths, [{"name": "a"}, {"name": "b"}]).changed
    assert snapshot(registry) == registry_before


def test_without_authorized_keys_nothing_is_rendered_or_read(paths):
    registry, keys = paths
    result = sync(paths, [{"name": "a", "key": KEY_A}], authorized_keys=None)
    assert result.changed and not result.authorized_keys_changed
    assert not keys.parent.exists()


# --- validation: hostile input is refused before anything is written ---------------------------

HOSTILE = [
    ({"name": "lab pc"}, "'lab pc' cannot name a spoke"),
    ({"name": "-x"}, "rename the host in the inventory"),
    ({"name": "a/b"}, "cannot name a spoke"),
    ({"name": "a\nb"}, "cannot name a spoke"),
    ({"name": "x" * 65}, "cannot name a spoke"),
    ({"name": "caf\u00e9"}, "cannot name a spoke"),
    ({"name": "a", "forwards": [{"name": "rdp", "port": 3389, "host": "localhost\n  ProxyCommand x"}]},
     "spoke a: revtunnel_forwards 'rdp' has host"),
    ({"name": "a", "forwards": [{"name": "rdp", "port": 3389, "host": "a b"}]}, "has host 'a b'"),
    ({"name": "a", "forwards": [{"name": "rdp", "port": 3389, "host": "2001:db8::1"}]}, "bracketed IPv6"),
    ({"name": "a", "forwards": [{"name": "rdp", "port": 3389, "host": "[zz]"}]}, "has host '[zz]'"),
    ({"name": "a", "forwards": [{"name": "rdp", "port": 0}]}, "has port 0"),
    ({"name": "a", "forwards": [{"name": "rdp", "port": 70000}]}, "has port 70000"),
    ({"name": "a", "forwards": [{"name": "rdp", "port": "22 x"}]}, "has port '22 x'"),
    ({"name": "a", "forwards": [{"name": "rdp", "prot": 1}]}, "unknown key(s) prot"),
    ({"name": "a", "forwards": [{"name": "ssh", "port": 22}]}, "the tunnel itself"),
    ({"name": "a", "forwards": ["rdp", {"name": "rdp"}]}, "lists forward 'rdp' twice in revtunnel_forwards"),
    ({"name": "a", "forwards": ["Web"]}, "bad forward name 'Web'"),
    ({"name": "a", "port": 9000}, "(revtunnel_port) or widen the range"),
    ({"name": "a", "key": "ssh-ed25519 AAAA"}, "not valid base64"),
    ({"name": "a", "key": "ssh-dss " + make_key("x", "ssh-dss").split()[1]}, "its type 'ssh-dss'"),
    ({"name": "a", "key": 'command="sh" ' + KEY_A}, "a line with options in front is refused"),
    ({"name": "a", "key": "ssh-rsa " + KEY_A.split()[1]}, "holds a 'ssh-ed25519' key, not 'ssh-rsa'"),
    ({"name": "a", "key": KEY_A + "\nssh-ed25519 AAAA x"}, "not one printable line"),
    ({"name": "a", "key_from": ['a",command="x']}, "revtunnel_key_from entry 'a\",command=\"x'"),
    ({"name": "a", "key_from": ["10.0.0.1\n"]}, "no commas, quotes, spaces or control characters"),
    ({"name": "a", "key_from": ["10.0.0.1,10.0.0.2"]}, "no commas"),
    ({"name": "a", "key_from": ["a b"]}, "no commas"),
    ({"name": "a", "key_from": ["'x'"]}, "no commas"),
    ({"name": "a", "key_from": [""]}, "must be non-empty strings"),
    ({"name": "a", "key_from": ["!"]}, "is not an sshd from= pattern"),
    ({"name": "a", "key_from": ["10.1.2.3/24"]}, "host bits"),
    ({"name": "a", "key_from": ["2001:db8::/200"]}, "is not an address or network"),
    ({"name": "a", "key_from": ["!192.0.2.7"]}, "only negated patterns"),
    ({"name": "a", "key_from": "192.0.2.0/24"}, "must be a list"),
    ({"name": "a", "colour": "red"}, "unknown key(s) colour"),
]


@pytest.mark.parametrize(("spoke", "expected"), HOSTILE)
def test_hostile_input_is_refused_before_writing(paths, spoke, expected):
    registry, keys = paths
    sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b"}], start=10000, end=10010)
    before = snapshot(registry, keys)
    files_before = sorted(os.listdir(registry.parent)), sorted(os.listdir(keys.parent))
    for check_mode in (True, False):
        with pytest.raises(Error) as err:
            sync(paths, [spoke, {"name": "b"}], start=10000, end=10010, check_mode=check_mode)
        assert expected in str(err.value)
    assert snapshot(registry, keys) == before
    assert (sorted(os.listdir(registry.parent)), sorted(os.listdir(keys.parent))) == files_before


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"start": 11000, "end": 10000}, "(revtunnel_port_range_start, revtunnel_port_range_end)"),
        ({"start": 10000, "end": 10000}, "widen the range (revtunnel_port_range_start, revtunnel_port_range_end)"),
        ({"trust": [{"name": "a b", "key": KEY_A}]}, "trust #1 name 'a b'"),
        ({"forget": [{"name": "a", "key": "nope"}]}, "forget for spoke a"),
        ({"trust": [{"name": "a"}]}, "give the OpenSSH public key line"),
    ],
)
def test_bad_ranges_and_changes_name_the_variable(paths, kwargs, expected):
    with pytest.raises(Error) as err:
        sync(paths, [{"name": "a"}, {"name": "b"}], check_mode=True, **kwargs)
    assert expected in str(err.value)


def test_valid_patterns_and_hosts_pass(paths):
    result = sync(paths, [{"name": "lab-pc_1.x", "key_from": ["10.1.2.3", "host.example.org", "*.lab.example.org",
                                                              "192.0.2.*", "!10.9.9.9", "fe80::1"],
                           "forwards": [{"name": "a", "port": "8080", "host": "[::1]"},
                                        {"name": "b", "port": 1, "host": "192.0.2.1"}, {"name": "c"}]}])
    assert result.ports == {"lab-pc_1.x": {"a": 10001, "b": 10002, "c": 10003, "ssh": 10000}}


def test_check_mode_on_a_fresh_host_creates_nothing(tmp_path):
    registry = tmp_path / "var" / "ports.json"
    keys = tmp_path / "etc" / "authorized_keys"
    result = sync((registry, keys), [{"name": "a", "key": KEY_A}], check_mode=True)
    assert result.changed and result.authorized_keys_changed and not result.written
    assert f"{bare(KEY_A)} a" in result.authorized_keys_after
    assert list(tmp_path.iterdir()) == []


def test_check_mode_without_proc_net_does_not_fail(paths, tmp_path):
    result = sync(paths, [{"name": "a"}], check_mode=True, listening_ports=None,
                  proc_net_paths=(str(tmp_path / "no-tcp"),))
    assert result.ports == {"a": {"ssh": 10000}}
    with pytest.raises(Error, match="cannot read listening sockets"):
        sync(paths, [{"name": "a"}], listening_ports=None, proc_net_paths=(str(tmp_path / "no-tcp"),))


# --- storage ------------------------------------------------------------------------------------------


def test_serialization_is_sorted_one_spoke_per_line_and_order_free(paths, tmp_path):
    spokes = [{"name": f"pc-{i:02d}", "key": make_key(str(i))} for i in range(20)]
    sync(paths, spokes, updated="2025-01-01T00:00:00Z")
    other = (tmp_path / "o" / "ports.json", tmp_path / "o" / "ak")
    sync(other, list(reversed(spokes)), updated="2025-01-01T00:00:00Z")
    text = paths[0].read_bytes()
    assert text == other[0].read_bytes()
    assert paths[1].read_bytes().replace(str(paths[0]).encode(), b"") == \
        other[1].read_bytes().replace(str(other[0]).encode(), b"")
    assert text.count(b"\n") == 20 + 7
    assert [line.split('"')[1] for line in text.decode().splitlines()[5:25]] == [f"pc-{i:02d}" for i in range(20)]


def test_crash_at_rename_leaves_both_files_whole(paths, monkeypatch):
    registry, keys = paths
    sync(paths, [{"name": "a", "key": KEY_A}])
    before = snapshot(registry, keys)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_fs.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}])
    monkeypatch.undo()
    assert snapshot(registry, keys) == before
    assert [p for p in os.listdir(registry.parent) + os.listdir(keys.parent) if p.endswith(".tmp")] == []


def test_crash_between_the_two_files_heals_on_the_next_run(paths, monkeypatch):
    registry, keys = paths
    sync(paths, [{"name": "a", "key": KEY_A}])
    real_replace = os.replace

    def failing_replace(src, dst):
        if os.fspath(dst) == str(keys):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(_fs.os, "replace", failing_replace)
    with pytest.raises(OSError):
        sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}])
    monkeypatch.undo()
    assert "b" in document.read_spokes(str(registry)) and len(key_lines(keys)) == 1
    result = sync(paths, [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}])
    assert result.authorized_keys_changed and not result.registry_changed
    assert len(key_lines(keys)) == 2


WORKERS = 8


def _add_own_spokes(registry, keys, worker, barrier, results):
    """Child body: add this worker's spokes, with keys, in a few runs, never pruning."""
    barrier.wait()
    try:
        mine = []
        for round_no in range(3):
            mine.extend(f"w{worker}-r{round_no}-s{i}" for i in range(3))
            result = sync_registry(
                path=registry, authorized_keys=keys, spokes=[{"name": n, "key": make_key(n)} for n in mine],
                range_start=20000, range_end=20999, prune=False, listening_ports=set(),
            )
        results.put({name: result.ports[name] for name in mine})
    except Exception as exc:  # report instead of leaving the parent waiting
        results.put({"error": repr(exc)})


def test_concurrent_writers_lose_nothing(paths):
    registry, keys = paths
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    children = [ctx.Process(target=_add_own_spokes, args=(str(registry), str(keys), w, barrier, results))
                for w in range(WORKERS)]
    for child in children:
        child.start()
    seen = {}
    for _child in children:
        reply = results.get(timeout=120)
        assert "error" not in reply, reply["error"]
        seen.update(reply)
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    spokes = document.read_spokes(str(registry))
    assert len(spokes) == WORKERS * 9
    assert {name: entry["ports"] for name, entry in spokes.items()} == seen
    assert all(entry["keys"] == [bare(make_key(name))] for name, entry in spokes.items())
    lines = key_lines(keys)
    assert sorted(line.rsplit(" ", 1)[1] for line in lines) == sorted(spokes)
    ports = [entry["ports"]["ssh"] for entry in spokes.values()]
    assert len(set(ports)) == len(ports)


def test_five_thousand_spokes_is_fast(paths):
    spokes = [{"name": f"spoke-{i:05d}", "key": make_key(str(i)), "key_from": ["192.0.2.0/24"]} for i in range(5000)]
    started = time.perf_counter()
    first = sync(paths, spokes, start=20000, end=39999)
    again = sync(paths, spokes, start=20000, end=39999)
    elapsed = time.perf_counter() - started
    assert len(first.ports) == 5000 and not again.changed
    # generous bound for slow CI; bench/bench_spoke_registry.py prints the real figures
    assert elapsed < 10


def test_trust_with_the_current_key_drops_the_next_key_of_a_rotation_cut_short(tmp_path):
    """A rotation stopped after the key swap left [old, new]; the spoke holds new; the next rotation goes on."""
    path = str(tmp_path / "ports.json")
    old, new, newer = (bare(make_key(seed)) for seed in ("old", "new", "newer"))
    sync_registry(path, spokes=[{"name": "pc-1", "key": old}], listening_ports=set())
    sync_registry(path, trust=[{"name": "pc-1", "key": new}], listening_ports=set())
    assert sorted(document.read_spokes(path)["pc-1"]["keys"]) == sorted([old, new])
    with pytest.raises(Error, match="at most 2"):
        sync_registry(path, trust=[{"name": "pc-1", "key": newer}], listening_ports=set())
    sync_registry(path, trust=[{"name": "pc-1", "key": newer, "current": new}], listening_ports=set())
    assert sorted(document.read_spokes(path)["pc-1"]["keys"]) == sorted([new, newer])


def test_a_sync_keeps_the_pair_of_a_rotation_under_way_and_replaces_a_key_that_really_changed(tmp_path):
    """site.yml that read the spoke's key just before a rotation trusted the next one must not drop it."""
    path = str(tmp_path / "ports.json")
    old, new, other = (bare(make_key(seed)) for seed in ("r-old", "r-new", "r-other"))
    sync_registry(path, spokes=[{"name": "pc-1", "key": old}], listening_ports=set())
    sync_registry(path, trust=[{"name": "pc-1", "key": new}], listening_ports=set())
    sync_registry(path, spokes=[{"name": "pc-1", "key": old}], listening_ports=set())
    assert sorted(document.read_spokes(path)["pc-1"]["keys"]) == sorted([old, new])
    sync_registry(path, spokes=[{"name": "pc-1", "key": other}], listening_ports=set())
    assert document.read_spokes(path)["pc-1"]["keys"] == [other]


def test_with_a_group_authorized_keys_is_readable_by_that_group_alone_and_mended(tmp_path):
    # sshd reads the file as the tunnel account: its group reads it, no other account of the hub does.
    registry, keys = tmp_path / "lib" / "ports.json", tmp_path / "ssh" / "authorized_keys"
    group = grp.getgrgid(os.getgid()).gr_name
    first = sync_registry(path=str(registry), authorized_keys=str(keys), authorized_keys_group=group,
                          spokes=[{"name": "a", "key": KEY_A}], listening_ports=set())
    assert first.authorized_keys_changed
    info = os.stat(keys)
    assert stat.S_IMODE(info.st_mode) == 0o640 and info.st_gid == os.getgid()
    os.chmod(keys, 0o644)
    mended = sync_registry(path=str(registry), authorized_keys=str(keys), authorized_keys_group=group,
                           spokes=[{"name": "a", "key": KEY_A}], listening_ports=set())
    assert mended.authorized_keys_changed and stat.S_IMODE(os.stat(keys).st_mode) == 0o640
    again = sync_registry(path=str(registry), authorized_keys=str(keys), authorized_keys_group=group,
                          spokes=[{"name": "a", "key": KEY_A}], listening_ports=set())
    assert not again.changed
    with pytest.raises(RuleError, match="authorized_keys_group 'no-such-group-here' does not exist"):
        sync_registry(path=str(registry), authorized_keys=str(keys), authorized_keys_group="no-such-group-here",
                      spokes=[{"name": "a", "key": KEY_A}], listening_ports=set())


def test_a_trust_returns_the_listeners_of_the_spokes_ports_for_the_rotations_banner_check(paths):
    # A real listening socket read from /proc: the session that holds the port before the tunnel restarts.
    import socket

    with socket.socket() as held, socket.socket() as other:
        held.bind(("127.0.0.1", 0))
        other.bind(("127.0.0.1", 0))
        held.listen()
        other.listen()
        port, other_port = held.getsockname()[1], other.getsockname()[1]
        low, high = sorted((port, other_port))
        sync(paths, [{"name": "a", "key": KEY_A, "port": port}, {"name": "b", "key": KEY_C, "port": other_port}],
             start=low, end=high)
        result = sync(paths, trust=[{"name": "a", "key": KEY_B}], listening_ports=None)
        assert result.listeners == {str(port): [str(os.fstat(held.fileno()).st_ino)]}, result.listeners
        assert sync(paths, trust=[{"name": "a", "key": KEY_B}], listening_ports=None, check_mode=True).listeners == {}
