"""A value that sshd rejects never reaches sshd: the run stops with sshd's own words, nothing else changes.

revtunnel_max_startups=100:300:400 has MaxStartups' shape, so the rulebook (which refuses anything that could add a
line or an option) lets it through; its rate over 100 is sshd's to refuse. The preflight does not copy sshd's parser
on purpose: `sshd -t` is the one authority on what sshd accepts, and this is its test.
"""

import shlex

from conftest import HUB, OPERATOR, SPOKES, hub_reads_banner, lab_host, run_playbook

DROPIN = "/etc/ssh/sshd_config.d/10-revtunnel.conf"


def admin_runs_a_command_on_the_hub():
    ssh = shlex.join(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                      "-o", "UserKnownHostsFile=/root/.ssh/rt-sec-hub.known_hosts", "-o", f"HostKeyAlias={HUB}",
                      "-i", "/root/.ssh/id_ed25519", f"admin@{HUB}", "id -un"])
    return lab_host(OPERATOR).run(f"timeout 20 {ssh} </dev/null")


def test_a_dropin_that_sshd_rejects_is_never_installed(hub, registry):
    key = " ".join(hub.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[:2])
    lab_host(OPERATOR).run_test(f"echo {shlex.quote(f'{HUB} {key}')} > /root/.ssh/rt-sec-hub.known_hosts")
    before = hub.file(DROPIN).sha256sum
    assert admin_runs_a_command_on_the_hub().stdout.strip() == "admin"

    proc = run_playbook("extensions/molecule/security/converge.yml", "-e", "revtunnel_max_startups=100:300:400")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "sshd rejected the configuration, so it was not applied and sshd" in out, out
    assert "Invalid MaxStartups spec" in out, out  # sshd's own message, passed through

    assert hub.file(DROPIN).sha256sum == before
    assert "maxstartups 100:30:400" in hub.check_output("sshd -T -C user=tunnel,host=x,addr=192.0.2.1")
    assert "clientalivecountmax 2" in hub.check_output("sshd -T -C user=tunnel,host=x,addr=192.0.2.1")
    assert hub.service("ssh").is_running
    assert hub.run("sshd -t").rc == 0
    res = admin_runs_a_command_on_the_hub()
    assert res.rc == 0 and res.stdout.strip() == "admin", res.stderr
    for spoke in SPOKES:
        assert hub_reads_banner(hub, registry["ports"][spoke]["ssh"], timeout=30), spoke
