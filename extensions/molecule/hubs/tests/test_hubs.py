"""The hub tier: shards, a hub rebuilt from nothing with its --limit run alone, and a shard moved to another hub.

The tests run in this order on one lab: each later one starts from what the earlier ones left.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from conftest import group, lab_host, run_playbook, wait_for

HUB_A, HUB_B = "rt-hs-hub-a", "rt-hs-hub-b"
SHARD_A, SHARD_B = ["rt-hs-a1", "rt-hs-a2"], ["rt-hs-b1", "rt-hs-b2"]
NETWORK = "revtunnel-molecule-hubs"
RECORDS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "hub-records"
INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"])
CLIENT = ("-e", "revtunnel_client_hosts=operators", "-e", "revtunnel_client_hub_user=revtunnel-jump",
          "-e", "revtunnel_client_spoke_user=admin", "-e", "revtunnel_client_ssh_dir=/root/.ssh")


def docker(*argv, check=True):
    proc = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=300, check=False)
    assert not check or proc.returncode == 0, proc
    return proc.stdout.strip()


def units(host):
    """The revtunnel@ units systemd knows on HOST, with their state."""
    out = host.check_output("systemctl list-units --all --plain --no-legend 'revtunnel@*' || true")
    return {line.split()[0]: line.split()[2] for line in out.splitlines() if line.strip()}


def conf_files(host):
    return sorted(host.check_output("ls /etc/revtunnel").split())


def status(hub_name):
    """{spoke: up} as the hub's revtunnel-status reads them now."""
    res = lab_host(hub_name).run("revtunnel-status --json --timeout 2")
    if res.rc not in (0, 1) or not res.stdout.strip():
        return {}
    return {row["spoke"]: row["up"] for row in json.loads(res.stdout) if row["forward"] == "ssh"}


def recap_hosts(output):
    """The hosts of a run's PLAY RECAP: the hosts the run contacted."""
    recap = output.split("PLAY RECAP", 1)[1]
    return sorted(re.findall(r"^(\S+)\s+: ok=", recap, re.M))


def operator_ssh(name):
    return lab_host(group("operators")[0]).run(f"ssh -o BatchMode=yes -o ConnectTimeout=10 {name} hostname")


def test_each_spoke_keeps_a_tunnel_to_its_own_shards_hub_only():
    for shard, hub_name in ((SHARD_A, HUB_A), (SHARD_B, HUB_B)):
        for spoke in shard:
            host = lab_host(spoke)
            assert units(host) == {f"revtunnel@{hub_name}.service": "active"}, units(host)
            assert conf_files(host) == [f"{hub_name}.known_hosts", f"{hub_name}.ssh_config"]


def test_each_hub_allocates_ports_for_its_own_shard():
    from labtest import read_registry

    for hub_name, shard in ((HUB_A, SHARD_A), (HUB_B, SHARD_B)):
        registry = read_registry(lab_host(hub_name))
        assert sorted(registry["spokes"]) == shard
        assert all(entry["keys"] for entry in registry["spokes"].values())
        assert wait_for(lambda h=hub_name, s=shard: status(h) == dict.fromkeys(s, True), timeout=60), status(hub_name)


def test_the_operator_reaches_each_spoke_through_its_own_hub():
    client = run_playbook("playbooks/client.yml", *CLIENT)
    assert client.returncode == 0, client.stdout + client.stderr
    operator = lab_host(group("operators")[0])
    operator.check_output("printf 'Include config.d/revtunnel-lab.conf\\n' > /root/.ssh/config")
    config = operator.check_output("cat /root/.ssh/config.d/revtunnel-lab.conf")
    for spoke in SHARD_A + SHARD_B:
        jump = operator.check_output(f"ssh -G {spoke}")
        home = HUB_A if spoke in SHARD_A else HUB_B
        assert f"hostkeyalias revtunnel-spoke-{spoke}" in jump
        proxy = re.search(r"^proxyjump (\S+)", jump, re.M).group(1)
        assert f"HostKeyAlias revtunnel-hub-{home}" in config.split(f"Host {proxy}\n", 1)[1].split("\nHost ", 1)[0]
        res = operator_ssh(spoke)
        assert res.rc == 0 and res.stdout.strip() == spoke, res


def test_a_hub_rebuilt_from_nothing_gets_every_spoke_back_with_its_limit_run_alone():
    hub = lab_host(HUB_A)
    old_key = hub.check_output("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    # Lost and re-installed: a new machine under the same name, fresh host keys, nothing of ours.
    docker("rm", "-f", HUB_A)
    docker("run", "-d", "--name", HUB_A, "--hostname", HUB_A, "--network", NETWORK, "--cap-add", "SYS_ADMIN",
           "--security-opt", "seccomp=unconfined", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
           "--tmpfs", "/run", "--tmpfs", "/run/lock", "revtunnel-lab/debian:12", "/lib/systemd/systemd")
    docker("exec", HUB_A, "sh", "-c", "timeout 90 systemctl is-system-running --wait || true")
    hub = lab_host(HUB_A)
    assert wait_for(lambda: hub.run("test -s /etc/ssh/ssh_host_ed25519_key.pub").rc == 0, timeout=30)
    assert hub.check_output("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2] != old_key

    # A host key that is not the restored one is a machine in the middle: every spoke refuses it.
    for spoke in SHARD_A:
        host = lab_host(spoke)
        assert wait_for(lambda h=host: "Host key verification failed" in h.run(
            f"journalctl -u revtunnel@{HUB_A}.service --since -60s --no-pager").stdout, timeout=60), spoke

    # Without the controller's copy of its records, the run would leave both spokes without a key: it fails
    # before anything changes on the hub, naming them.
    aside = RECORDS.with_name("hub-records-aside")
    shutil.move(RECORDS, aside)
    try:
        refused = run_playbook("site.yml", "--limit", HUB_A)
    finally:
        shutil.move(aside, RECORDS)
    assert refused.returncode != 0
    assert "rt-hs-a1, rt-hs-a2 would be left without a trusted key" in refused.stdout, refused.stdout
    assert hub.run("test -e /var/lib/revtunnel/ports.json").rc != 0
    assert hub.check_output("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2] != old_key

    # With the copy: the hub's run alone brings every spoke back; no spoke is contacted.
    started = time.monotonic()
    rebuilt = run_playbook("site.yml", "--limit", HUB_A)
    ended = time.monotonic()
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert recap_hosts(rebuilt.stdout) == [HUB_A]
    assert hub.check_output("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2] == old_key
    assert wait_for(lambda: status(HUB_A) == dict.fromkeys(SHARD_A, True), timeout=60), status(HUB_A)
    back = time.monotonic() - ended
    print(f"rebuilt hub: site.yml --limit took {ended - started:.1f} s, every spoke usable {back:.1f} s after it")
    # The operator goes through with the config written before the hub was lost.
    for spoke in SHARD_A:
        res = operator_ssh(spoke)
        assert res.rc == 0 and res.stdout.strip() == spoke, res


def _inventory(edit):
    """A copy of molecule's inventory directory, changed by EDIT(groups, group_vars); the path of its YAML.

    Molecule writes the groups at the top level of its YAML and the scenario's group variables into
    group_vars/<group>, which win over variables in the YAML: EDIT changes both dicts, written back as files.
    """
    where = Path(tempfile.mkdtemp(prefix="revtunnel-hubs-"))
    shutil.copytree(INVENTORY.parent, where, dirs_exist_ok=True)
    groups = yaml.safe_load(INVENTORY.read_text())
    vars_dir = where / "group_vars"
    vars_dir.mkdir(exist_ok=True)
    group_vars = {p.name.split(".")[0]: yaml.safe_load(p.read_text()) or {} for p in vars_dir.iterdir() if p.is_file()}
    edit(groups, group_vars)
    for path in vars_dir.iterdir():
        path.unlink()
    for name, values in group_vars.items():
        (vars_dir / f"{name}.yml").write_text(yaml.safe_dump(values))
    target = where / INVENTORY.name
    target.write_text(yaml.safe_dump(groups))
    return target


def _move(groups, group_vars):
    # Step 1 of the move: shard b's spokes keep their hub and gain hub a, which now serves every spoke.
    groups["hubs_ab"] = {"hosts": {HUB_A: None, HUB_B: None}}
    groups["spokes_ab"] = {"hosts": dict.fromkeys(SHARD_A + SHARD_B)}
    group_vars.setdefault("spokes_b", {})["revtunnel_hub_group"] = "hubs_ab"
    group_vars.setdefault("hubs_a", {})["revtunnel_spokes_group"] = "spokes_ab"


def _retire(groups, group_vars):
    # Step 2: hub b leaves the inventory; shard b's spokes are hub a's alone.
    _move(groups, group_vars)
    for members in groups.values():
        if isinstance(members, dict):
            (members.get("hosts") or {}).pop(HUB_B, None)
    group_vars["spokes_b"]["revtunnel_hub_group"] = "hubs_a"


def test_a_shard_moves_to_the_other_hub_and_the_old_hub_retires():
    moving = _inventory(_move)
    first = run_playbook("site.yml", inventory=str(moving))
    assert first.returncode == 0, first.stdout + first.stderr
    for spoke in SHARD_B:
        assert set(units(lab_host(spoke))) == {f"revtunnel@{HUB_A}.service", f"revtunnel@{HUB_B}.service"}
    assert wait_for(lambda: status(HUB_A) == dict.fromkeys(SHARD_A + SHARD_B, True), timeout=60), status(HUB_A)

    # A run limited to one hub (red team, round four): hub b is still these spokes' hub, only outside --limit. The
    # spokes retired it all the same (its unit stopped, its files gone) until spoke_tunnel learned `keep`.
    limited = run_playbook("site.yml", "--limit", f"{HUB_A}:spokes_b", inventory=str(moving))
    assert limited.returncode == 0, limited.stdout + limited.stderr
    for spoke in SHARD_B:
        host = lab_host(spoke)
        assert units(host) == {f"revtunnel@{HUB_A}.service": "active", f"revtunnel@{HUB_B}.service": "active"}, \
            units(host)
        assert conf_files(host) == sorted(f"{h}.{kind}" for h in (HUB_A, HUB_B)
                                          for kind in ("known_hosts", "ssh_config"))
    assert wait_for(lambda: status(HUB_B) == dict.fromkeys(SHARD_B, True), timeout=60), status(HUB_B)

    retired = _inventory(_retire)
    second = run_playbook("site.yml", inventory=str(retired))
    assert second.returncode == 0, second.stdout + second.stderr
    for spoke in SHARD_B:
        host = lab_host(spoke)
        assert units(host) == {f"revtunnel@{HUB_A}.service": "active"}, units(host)
        assert conf_files(host) == [f"{HUB_A}.known_hosts", f"{HUB_A}.ssh_config"]
        assert host.run(f"systemctl is-enabled revtunnel@{HUB_B}.service").stdout.strip() != "enabled"
    client = run_playbook("playbooks/client.yml", *CLIENT, inventory=str(retired))
    assert client.returncode == 0, client.stdout + client.stderr
    operator = lab_host(group("operators")[0])
    assert HUB_B not in operator.check_output("cat /root/.ssh/config.d/revtunnel-lab.conf")
    for spoke in SHARD_A + SHARD_B:
        res = operator_ssh(spoke)
        assert res.rc == 0 and res.stdout.strip() == spoke, res
