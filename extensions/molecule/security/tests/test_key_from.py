"""revtunnel_key_from: a spoke key pinned to the lab's addresses is refused from anywhere else.

The first spoke's key is pinned to the spoke's own address; a copy of the key on the operator container
(another address of the lab network) is refused, while the spoke itself keeps its tunnel. The run that
removes the pin leaves the lab as it found it.
"""

import shlex

import yaml
from conftest import HUB, OPERATOR, SPOKES, TUNNEL_KEY, hub_reads_banner, lab_host, run_playbook

CONVERGE = "extensions/molecule/security/converge.yml"


def stolen_key_login(port):
    """Log in as the tunnel account from the operator container with a copy of the first spoke's key."""
    key = lab_host(SPOKES[0]).file(TUNNEL_KEY).content_string
    operator = lab_host(OPERATOR)
    operator.check_output(f"install -m 0600 /dev/null /root/pinned_key && cat > /root/pinned_key <<'KEY'\n{key}KEY")
    ssh = shlex.join(["ssh", "-F", "/dev/null", "-i", "/root/pinned_key", "-o", "IdentitiesOnly=yes",
                      "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                      "-o", "ExitOnForwardFailure=yes", "-N", "-R", f"localhost:{port}:localhost:22", f"tunnel@{HUB}"])
    return operator.run(f"timeout 8 {ssh} </dev/null")


def test_a_pinned_key_is_refused_from_another_address(hub, registry, tmp_path):
    spoke = lab_host(SPOKES[0])
    address = spoke.check_output("hostname -i").split()[0]
    port = registry["ports"][SPOKES[0]]["ssh"]
    # Positive control: without a pin the copied key is accepted (its forward then fails: the port is held).
    accepted = stolen_key_login(port)
    assert "Permission denied" not in accepted.stderr, accepted.stderr

    pinned = tmp_path / "pinned.yml"
    pinned.write_text(yaml.safe_dump({"all": {"children": {"spokes": {"hosts": {
        SPOKES[0]: {"revtunnel_key_from": [f"{address}/32"]}}}}}}))
    try:
        proc = run_playbook(CONVERGE, "-i", str(pinned))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        line = [ln for ln in hub.file("/etc/ssh/revtunnel/authorized_keys").content_string.splitlines()
                if ln.endswith(" " + SPOKES[0])]
        assert len(line) == 1 and f'from="{address}/32"' in line[0], line
        refused = stolen_key_login(port)
        assert "Permission denied (publickey)" in refused.stderr, refused.stderr
        # The spoke itself, from its pinned address, still gets in.
        spoke.run_test(f"systemctl restart revtunnel@{HUB}.service")
        assert hub_reads_banner(hub, port, timeout=60)
    finally:
        again = run_playbook(CONVERGE)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "from=" not in hub.file("/etc/ssh/revtunnel/authorized_keys").content_string
    assert hub_reads_banner(hub, port, timeout=60)
