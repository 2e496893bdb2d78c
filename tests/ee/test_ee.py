# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The execution environment (`make ee`) runs site.yml on a Docker lab of 1 hub and 3 spokes: `make test-ee`.

ansible-navigator runs the playbook in the EE image, from a project directory that holds only an inventory, a
key, the lab's host keys, an ansible.cfg and a one-line site.yml importing ``hubspoke.revtunnel.site``: the
collection can only come from the image, where it was installed from the built tarball. The EE has no Docker
socket; it joins the lab's network (navigator's container options) and reaches the hosts over ssh as root, with
every host key pinned. The same playbook then runs once more with the plain ansible-playbook of .venv over ssh,
and both durations are printed (the target is within 1.5x; timing is printed, not asserted).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REGISTRY = "/var/lib/revtunnel/ports.json"  # the hub's registry (docs/usage.md), version 2: {"spokes": {name: entry}}

IMAGE = os.environ.get("REVTUNNEL_EE_IMAGE", "revtunnel-ee:latest")
NAVIGATOR = Path(os.environ.get("REVTUNNEL_NAVIGATOR", BIN / "ansible-navigator"))
LAB_IMAGE = "revtunnel-lab/debian:12"
NETWORK = "rt-ee-lab"
HUB = "rt-ee-hub"
SPOKES = ["rt-ee-spoke-1", "rt-ee-spoke-2", "rt-ee-spoke-3"]
RUN_TIMEOUT = 900
TIMINGS = ROOT / ".cache" / "ee" / "test-ee-timings.json"
# ansible-runner's display callback in the EE wraps each event's data in terminal escapes around the text.
RUNNER_EVENT = re.compile(r"\x1b\[K(?:[A-Za-z0-9+/=]+\x1b\[\d+D)?")
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def docker(*args, check=True, timeout=180):
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def sh(container, command, check=True):
    return docker("exec", container, "sh", "-c", command, check=check)


def remove_lab():
    names = [HUB, *SPOKES]
    existing = set(docker("ps", "-a", "--format", "{{.Names}}", check=False).split())
    gone = [name for name in names if name in existing]
    if gone:
        docker("rm", "-f", *gone, check=False, timeout=300)
    docker("network", "rm", NETWORK, check=False)


def start_node(name):
    """A lab node as DESIGN.md's test lab facts say: systemd as PID 1, no --privileged."""
    docker("run", "-d", "--name", name, "--hostname", name, "--network", NETWORK, "--cap-add", "SYS_ADMIN",
           "--cap-add", "SYS_PTRACE", "--security-opt", "seccomp=unconfined", "--cgroupns", "host",
           "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
           LAB_IMAGE, "/lib/systemd/systemd")


def wait_for_sshd(name, limit=90.0):
    """Poll until systemd is up and sshd has its host keys (made at boot by the lab image)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = sh(name, "systemctl is-system-running 2>/dev/null; systemctl is-active ssh.service", check=False)
        if state.split()[:1] in (["running"], ["degraded"]) and state.endswith("\nactive"):
            return
        time.sleep(0.3)
    raise TimeoutError(f"{name}: systemd or ssh.service not up within {limit} s")


def recap(output):
    """{host: (ok, changed, unreachable, failed)} from a PLAY RECAP."""
    return {m.group(1): tuple(int(v) for v in m.groups()[1:]) for m in RECAP.finditer(output)}


def timed(command, cwd, env):
    started = time.monotonic()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)
    output = RUNNER_EVENT.sub("", proc.stdout + proc.stderr)
    return {"seconds": round(time.monotonic() - started, 1), "rc": proc.returncode, "output": output,
            "recap": recap(output)}


def requirements_pin(name):
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Start the lab and write the project directory that navigator runs from; removed at the end."""
    assert docker("images", "-q", LAB_IMAGE), f"{LAB_IMAGE} is missing: run make lab"
    assert docker("images", "-q", IMAGE), f"{IMAGE} is missing: run make ee"
    assert NAVIGATOR.exists(), f"{NAVIGATOR} is missing: install requirements-dev.txt (make venv)"
    remove_lab()
    docker("network", "create", NETWORK)
    try:
        for name in (HUB, *SPOKES):
            start_node(name)
        for name in (HUB, *SPOKES):
            wait_for_sshd(name)
        project = tmp_path_factory.mktemp("ee-project")
        key = project / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rt-ee-test", "-f", str(key)],
                       check=True)
        public = key.with_suffix(".pub").read_text().strip()
        address, host_keys = {}, {}
        for name in (HUB, *SPOKES):
            sh(name, f"install -d -m 0700 /root/.ssh && echo '{public}' >/root/.ssh/authorized_keys")
            address[name] = docker("inspect", "-f", '{{(index .NetworkSettings.Networks "%s").IPAddress}}' % NETWORK,
                                   name)
            # Read through docker exec, the lab's trusted channel: never trust on first use.
            host_keys[name] = " ".join(sh(name, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2])
        # By address for Ansible and the hub hop; by spoke name for the HostKeyAlias of ssh through the tunnel.
        (project / "known_hosts").write_text(
            "".join(f"{address[n]} {host_keys[n]}\n{n} {host_keys[n]}\n" for n in (HUB, *SPOKES)))
        inventory = {"all": {
            # ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False in the EE; an inventory variable outranks it.
            "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                     "ansible_host_key_checking": True,
                     "ansible_ssh_common_args": f"-o UserKnownHostsFile={project}/known_hosts",
                     "revtunnel_hub_address": address[HUB]},
            "children": {"hub": {"hosts": {HUB: {"ansible_host": address[HUB]}}},
                         "spokes": {"hosts": {n: {"ansible_host": address[n]} for n in SPOKES}}}}}
        (project / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        (project / "ansible.cfg").write_text(
            "[defaults]\ninterpreter_python = auto_silent\nforks = 20\nretry_files_enabled = false\n"
            "callback_result_format = yaml\n\n[connection]\npipelining = true\n")
        # The collection's playbook by its name: nothing in this directory can provide it.
        (project / "site.yml").write_text(
            "---\n- name: Provision the hub and the spokes\n"
            "  ansible.builtin.import_playbook: hubspoke.revtunnel.site\n")
        yield {"project": project, "key": key, "address": address, "host_keys": host_keys, "inventory": inventory}
    finally:
        remove_lab()


def navigator_options(project):
    """The EE from the local image, on the lab's network (the EE has no Docker socket, only ssh)."""
    return ["--ee", "true", "--mode", "stdout", "--pull-policy", "never", "--eei", IMAGE, "--ce", "docker",
            f"--co=--network={NETWORK}", "--lf", str(project / "navigator.log")]


def navigator_env():
    """Nothing from this checkout's environment (the Makefile exports its config and collections path)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}


@pytest.fixture(scope="module")
def runs(lab):
    """site.yml through navigator in the EE twice, then with the plain ansible-playbook once, each timed."""
    project = lab["project"]
    env = navigator_env()
    navigator = [str(NAVIGATOR), "run", "site.yml", "-i", "hosts.yml", *navigator_options(project), "--pae", "false"]
    first = timed(navigator, project, env)
    second = timed(navigator, project, env) if first["rc"] == 0 else None
    plain_env = dict(env, ANSIBLE_CONFIG=str(project / "ansible.cfg"),
                     ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_FORCE_COLOR="0")
    plain = timed([str(BIN / "ansible-playbook"), "-i", "hosts.yml", "site.yml"], project, plain_env) \
        if first["rc"] == 0 else None
    return {"first": first, "second": second, "plain": plain}


def test_ee_pins_the_same_ansible_core_as_requirements_txt():
    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert definition["dependencies"]["ansible_core"]["package_pip"] == requirements_pin("ansible-core")
    version = docker("run", "--rm", "--entrypoint", "python3", IMAGE, "-c",
                     "import ansible.release; print(ansible.release.__version__)")
    assert f"ansible-core=={version}" == requirements_pin("ansible-core")


def test_collection_in_the_image_is_the_built_tarball_of_this_version():
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    listing = json.loads(docker("run", "--rm", IMAGE, "ansible-galaxy", "collection", "list", "--format", "json"))
    found = {path: found["hubspoke.revtunnel"] for path, found in listing.items() if "hubspoke.revtunnel" in found}
    assert found == {"/usr/share/ansible/collections/ansible_collections": {"version": galaxy["version"]}}
    # MANIFEST.json exists only in an installed tarball, never in a checkout.
    manifest = json.loads(docker("run", "--rm", IMAGE, "cat",
                                 "/usr/share/ansible/collections/ansible_collections/hubspoke/revtunnel/MANIFEST.json"))
    assert manifest["collection_info"]["version"] == galaxy["version"]


def test_project_directory_gives_the_ee_no_collection(lab):
    # The only directory navigator mounts: the EE's working directory (and the inventory's and playbook's).
    found = sorted(str(p.relative_to(lab["project"])) for p in lab["project"].rglob("*"))
    assert not [p for p in found if re.search(r"collections|roles|playbooks|plugins", p)], found
    assert {"ansible.cfg", "hosts.yml", "site.yml"} <= set(found)


def test_the_ee_refuses_a_host_whose_key_is_not_the_pinned_one(lab):
    # The hub's address pinned to another host's key: ssh in the EE must refuse it, not warn and go on.
    project = lab["project"]
    (project / "wrong_known_hosts").write_text(f"{lab['address'][HUB]} {lab['host_keys'][SPOKES[0]]}\n")
    inventory = json.loads(json.dumps(lab["inventory"]))
    inventory["all"]["vars"]["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={project}/wrong_known_hosts"
    (project / "wrong-hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    command = [str(NAVIGATOR), "exec", *navigator_options(project), "--",
               "ansible", "-i", "wrong-hosts.yml", "hub", "-m", "ansible.builtin.ping"]
    refused = timed(command, project, navigator_env())
    assert refused["rc"] != 0, refused["output"][-3000:]
    assert "UNREACHABLE" in refused["output"] and "Host key verification failed" in refused["output"], \
        refused["output"][-3000:]


def test_site_yml_converges_in_the_ee(runs):
    first = runs["first"]
    assert first["rc"] == 0, f"ansible-navigator run failed ({first['rc']}):\n{first['output'][-6000:]}"
    assert sorted(first["recap"]) == sorted([HUB, *SPOKES]), first["output"][-3000:]
    assert all(v[2:] == (0, 0) for v in first["recap"].values()), first["recap"]
    assert all(v[1] > 0 for v in first["recap"].values()), first["recap"]


def test_second_ee_run_changes_nothing(runs):
    second = runs["second"]
    assert second is not None, "the first run failed"
    assert second["rc"] == 0, second["output"][-6000:]
    assert sorted(second["recap"]) == sorted([HUB, *SPOKES])
    changed = {host: v[1] for host, v in second["recap"].items() if v[1] or v[2] or v[3]}
    assert not changed, f"changed/unreachable/failed on a re-run: {second['recap']}\n{second['output'][-6000:]}"


def test_every_spoke_is_usable_through_the_hub(runs, lab):
    assert runs["first"]["rc"] == 0, "the first run failed"
    document = json.loads(sh(HUB, f"cat {REGISTRY}"))
    assert document["version"] == 2, document
    ports = {name: entry["ports"]["ssh"] for name, entry in document["spokes"].items()}
    assert sorted(ports) == SPOKES
    project, key, hub = lab["project"], lab["key"], lab["address"][HUB]
    common = ["-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
              "-o", f"UserKnownHostsFile={project}/known_hosts", "-o", "StrictHostKeyChecking=yes",
              "-o", "ConnectTimeout=10"]
    proxy = " ".join(["ssh", *common, "-W", "%h:%p", f"root@{hub}"])
    for spoke, port in ports.items():
        # The hub reads the spoke's SSH banner through the tunnel's port on its loopback.
        banner = sh(HUB, f"timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; head -n 1 <&3'")
        assert banner.startswith("SSH-2.0-OpenSSH_"), (spoke, port, banner)
        # An ssh through the hub lands on the spoke, its host key checked under its own name.
        landed = subprocess.run(["ssh", *common, "-o", f"ProxyCommand={proxy}", "-o", f"HostKeyAlias={spoke}",
                                 "-p", str(port), "root@localhost", "hostname"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert (landed.returncode, landed.stdout.strip()) == (0, spoke), landed.stderr


def test_plain_ansible_playbook_agrees_and_both_timings_are_printed(runs, capsys):
    plain, first, second = runs["plain"], runs["first"], runs["second"]
    assert plain is not None, "the first run failed"
    assert plain["rc"] == 0, plain["output"][-6000:]
    assert all(v[1:] == (0, 0, 0) for v in plain["recap"].values()) and len(plain["recap"]) == 4, plain["recap"]
    timings = {"ee_first_seconds": first["seconds"], "ee_rerun_seconds": second["seconds"],
               "plain_rerun_seconds": plain["seconds"], "ratio": round(second["seconds"] / plain["seconds"], 2)}
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")
    with capsys.disabled():
        print(f"\nsite.yml, 1 hub + 3 spokes: EE first run {first['seconds']} s; re-run: EE (ansible-navigator) "
              f"{second['seconds']} s, plain ansible-playbook {plain['seconds']} s, ratio {timings['ratio']} "
              "(target <= 1.5)")
