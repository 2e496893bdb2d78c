"""Through the whole lab: the operator lands on each spoke; the port module behaves through Ansible."""

from conftest import group, lab_host, run_playbook
from labtest import read_registry


def test_operator_lands_on_each_spoke_through_the_hub_with_pinned_keys():
    client = run_playbook("playbooks/client.yml", "-e", "revtunnel_client_hosts=operators",
                          "-e", "revtunnel_client_hub_user=admin", "-e", "revtunnel_client_spoke_user=admin",
                          "-e", "revtunnel_client_ssh_dir=/root/.ssh")
    assert client.returncode == 0, client.stdout + client.stderr
    prove = run_playbook("tests/lab/prove.yml")
    assert prove.returncode == 0, prove.stdout + prove.stderr
    operator = lab_host(group("operators")[0])
    for spoke in group("spokes"):
        assert operator.check_output(f"ssh -o BatchMode=yes {spoke} hostname") == spoke


def test_operator_refuses_a_spoke_whose_host_key_is_not_the_pinned_one():
    operator = lab_host(group("operators")[0])
    spokes = group("spokes")
    # Point the first spoke's alias at the second spoke's port: a different host key must be refused.
    cfg = operator.check_output("ssh -G %s" % spokes[1])
    port = [ln.split()[1] for ln in cfg.splitlines() if ln.startswith("port ")][0]
    res = operator.run(f"ssh -o BatchMode=yes -p {port} {spokes[0]} hostname")
    assert res.rc != 0
    assert "HOST IDENTIFICATION HAS CHANGED" in res.stderr or "Host key verification failed" in res.stderr


def test_extra_forward_reaches_the_spokes_service():
    hub = lab_host(group("hub")[0])
    ports = read_registry(hub)["ports"]
    for spoke in group("spokes"):
        lab_host(spoke).run("systemd-run --unit lab-web --property=DynamicUser=yes "
                            "python3 -m http.server 8080 --bind 127.0.0.1 --directory /usr/share/doc")
        out = hub.run("python3 - <<'PY'\nimport time, urllib.request\nfor _ in range(50):\n    try:\n"
                      "        print(urllib.request.urlopen('http://127.0.0.1:%d/', timeout=3).status); break\n"
                      "    except OSError:\n        time.sleep(0.2)\nPY" % ports[spoke]["web"])
        assert out.stdout.strip() == "200", (spoke, out.stdout, out.stderr)


def test_port_allocation_module_through_ansible_check_apply_check_apply():
    proc = run_playbook("tests/lab/port_allocation.yml", "-e", "target=hub")
    assert proc.returncode == 0, proc.stdout + proc.stderr
