"""Helpers of the tests against the demo lab of scripts/lab/demo.sh (`make demo`): containers revtunnel-demo-*."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_INVENTORY = ROOT / "lab" / "demo" / "hosts.yml"
DEMO_CONTAINERS = {f"revtunnel-demo-{name}" for name in ("lab-hub", "lab-pc-1", "lab-pc-2", "operator")}
# What a user's login shell would have: no venv, no ANSIBLE_* from the Makefile, no make variables.
PLAIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_THROUGH = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                  "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "LANG", "TERM")


def plain_env(cwd, **extra):
    """The environment of a fresh shell in cwd: PATH without the venv, no Ansible or make settings.

    PIP_* and REVTUNNEL_* (mirrors, dockerd flags) pass through: they describe the machine, not the checkout.
    """
    env = {key: value for key, value in os.environ.items()
           if key in PASSED_THROUGH or key.startswith(("PIP_", "REVTUNNEL_"))}
    env.update(PATH=PLAIN_PATH, HOME=os.environ.get("HOME", "/root"), PWD=str(cwd), LANG=env.get("LANG", "C.UTF-8"))
    env.update(extra)
    return env


def running_demo_containers():
    out = subprocess.run(["docker", "ps", "--filter", "label=revtunnel.lab=demo", "--format", "{{.Names}}"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())
