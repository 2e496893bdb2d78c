"""The hub's registry is the one record of each spoke: a lost authorized_keys file or a rotation cut short
while a spoke is switched off loses nothing, and the spoke's tunnel comes back on its own when it boots.

Runs after test_day2.py, whose last test stopped and started the first hub: each test waits for the lab first.
"""

import json
import subprocess

from conftest import group, lab_host, run_playbook, wait_for
from test_day2 import SPOKE_A, SPOKE_B, hub_node, ports, trusted_lines, wait_up

KEY = "/var/lib/revtunnel/id_ed25519"


def all_up():
    for hub in group("hub"):
        for spoke in (SPOKE_A, SPOKE_B):
            wait_up(spoke, tries=180, hub=hub)


def public_key(spoke, path=KEY):
    return " ".join(lab_host(spoke).check_output(f"ssh-keygen -y -f {path}").split()[:2])


def registry_keys(spoke, hub):
    text = hub_node(hub).file("/var/lib/revtunnel/ports.json").content_string
    return json.loads(text)["spokes"][spoke]["keys"]


def site_with_spoke_off(spoke):
    """Run site.yml while the spoke's container is stopped; it must not stop the run for the others."""
    subprocess.run(["docker", "stop", "-t", "10", spoke], check=True, capture_output=True)
    proc = run_playbook("site.yml")
    assert proc.returncode in (2, 4), proc.stdout[-3000:] + proc.stderr
    return proc


def test_a_lost_authorized_keys_file_comes_back_from_the_registry_while_a_spoke_is_off():
    all_up()
    hub = group("hub")[0]
    before = trusted_lines(SPOKE_B, hub)
    assert len(before) == 1
    try:
        subprocess.run(["docker", "stop", "-t", "10", SPOKE_B], check=True, capture_output=True)
        hub_node(hub).check_output("rm -f /etc/ssh/revtunnel/authorized_keys")
        proc = run_playbook("site.yml")
        assert proc.returncode in (2, 4), proc.stdout[-3000:] + proc.stderr
        # The switched-off spoke's key is written again from the registry, not from the lost file.
        assert trusted_lines(SPOKE_B, hub) == before
    finally:
        subprocess.run(["docker", "start", SPOKE_B], check=False, capture_output=True)
    # No further run: the spoke boots, its unit starts, and the hub accepts its key again.
    for each in group("hub"):
        wait_up(SPOKE_B, tries=180, hub=each)


def test_a_rotation_cut_short_while_the_spoke_is_off_still_lets_it_in_and_the_next_rotation_finishes(tmp_path):
    all_up()
    node = lab_host(SPOKE_A)
    old = public_key(SPOKE_A)
    # Rotation step 1 as rotate.yml does it: the next key is made and every hub trusts it beside the old one.
    node.check_output(f"rm -f {KEY}.next {KEY}.next.pub && "
                      f"runuser -u revtunnel -- ssh-keygen -q -t ed25519 -N '' -C rotation-test -f {KEY}.next")
    new = public_key(SPOKE_A, f"{KEY}.next")
    trust = tmp_path / "trust.yml"
    trust.write_text(
        "- name: Trust the next key of one spoke, as rotation step 1 does\n"
        "  hosts: hub\n  gather_facts: false\n  tasks:\n"
        "    - name: Trust the next key beside the current one\n"
        "      hubspoke.revtunnel.spoke_registry:\n"
        "        authorized_keys: /etc/ssh/revtunnel/authorized_keys\n"
        f"        trust: [{{name: {SPOKE_A}, key: '{new}', current: '{old}'}}]\n")
    proc = run_playbook(str(trust))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for hub in group("hub"):
        assert sorted(registry_keys(SPOKE_A, hub)) == sorted([old, new]), hub
    # The run is cut off after the key swap on the spoke, before the restart and before step 2.
    node.check_output(f"mv -f {KEY}.next {KEY} && mv -f {KEY}.next.pub {KEY}.pub")
    try:
        site_with_spoke_off(SPOKE_A)
        for hub in group("hub"):
            assert sorted(registry_keys(SPOKE_A, hub)) == sorted([old, new]), "an unreachable spoke keeps both keys"
    finally:
        subprocess.run(["docker", "start", SPOKE_A], check=False, capture_output=True)
    # It boots with the new key, which every hub already trusts.
    for hub in group("hub"):
        wait_up(SPOKE_A, tries=180, hub=hub)
    # The next rotation finishes cleanly: one key left on every hub, the one the spoke holds.
    proc = run_playbook("playbooks/rotate_keys.yml", "--limit", SPOKE_A)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    held = public_key(SPOKE_A)
    assert held not in (old, new)
    for hub in group("hub"):
        assert registry_keys(SPOKE_A, hub) == [held], hub
        assert len(trusted_lines(SPOKE_A, hub)) == 1
        wait_up(SPOKE_A, hub=hub)
    assert ports()[SPOKE_A]


def test_a_unit_file_that_a_stopped_run_wrote_but_systemd_never_read_is_applied_by_the_next_run():
    all_up()
    node = lab_host(SPOKE_A)
    unit = "/etc/systemd/system/revtunnel@.service"
    # What a run leaves when it stops after writing a new unit: the file on disk is the role's, and systemd
    # still runs the one it read before (here an older one with an extra comment line).
    node.check_output(f"cp -p {unit} /root/unit.role && sed -i '1a # an older unit' {unit} && systemctl daemon-reload "
                      f"&& cp /root/unit.role {unit} && rm -f /root/unit.role")
    started = {}
    for hub in group("hub"):
        assert node.check_output(f"systemctl show -p NeedDaemonReload revtunnel@{hub}.service") == \
            "NeedDaemonReload=yes"
        started[hub] = node.check_output(f"systemctl show -p ActiveEnterTimestampMonotonic revtunnel@{hub}.service")
    proc = run_playbook("site.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert f"changed: [{SPOKE_A}]" in proc.stdout.split("restart what changed")[1].split("TASK")[0]
    # systemd read the unit again, and every hub's tunnel restarted, not only the first one's: all of them ran
    # the unit systemd had read before (the restart is deferred by revtunnel_restart_delay).
    for hub in group("hub"):
        assert node.check_output(f"systemctl show -p NeedDaemonReload revtunnel@{hub}.service") == \
            "NeedDaemonReload=no"
        assert wait_for(lambda h=hub: node.check_output(
            f"systemctl show -p ActiveEnterTimestampMonotonic revtunnel@{h}.service") != started[h], timeout=30), hub
        wait_up(SPOKE_A, hub=hub)
    # And the run after it has nothing left to do on the spoke.
    again = run_playbook("site.yml", "--limit", f"hub:{SPOKE_A}")
    assert again.returncode == 0 and f"{SPOKE_A}" in again.stdout
    assert f"changed: [{SPOKE_A}]" not in again.stdout
