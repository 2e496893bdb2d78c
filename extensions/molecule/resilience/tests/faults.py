"""Faults of a hub-and-spoke Docker lab, and the time until the hub reads the spoke's SSH banner again.

Used by the resilience scenario (bounded assertions) and by bench/recovery.py (figures). Everything
goes through the docker CLI, so the same code drives molecule's containers and the bench's own.
Times are host wall-clock seconds: the containers share the host's clock.
"""

from __future__ import annotations

import subprocess
import time

# Runs on the hub: seconds from SINCE until 127.0.0.1:PORT answers with an SSH banner, or "timeout".
# A dead session that still holds the port accepts the connection and sends nothing: 0.5 s per try then.
POLLER = r"""
import socket, sys, time
since, limit, port = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
while time.time() - since < limit:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.settimeout(0.5)
            if s.recv(64).startswith(b"SSH-"):
                print("%.3f" % max(0.0, time.time() - since))
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.02)
print("timeout")
"""

# Runs on the hub in the background: connect to a spoke's port every half second, as an operator or a
# status check would. Each connection is traffic on the (dead) session, so sshd's ClientAlive never fires.
HITTER = r"""
import socket, sys, time
end, port = time.time() + float(sys.argv[1]), int(sys.argv[2])
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        pass
    time.sleep(0.5)
"""


# Runs on the hub in the background: read a spoke's port every few seconds for a while, as revtunnel-status, the
# metrics timer or an operator retrying would (each attempt queues a channel open on the tunnel's session).
PROBER = r"""
import os, socket, sys, time
end, port, every = time.time() + float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
with open(sys.argv[4], "w") as f:
    f.write(str(os.getpid()))
while time.time() < end:
    try:
        with socket.create_connection(("127.0.0.1", port), 3) as s:
            s.settimeout(3)
            s.recv(64)
    except OSError:
        pass
    time.sleep(every)
"""


# Runs on the hub in the background: one connection through the tunnel, as an operator's session would be.
# It reads the spoke's banner, waits for the GO file (written when the link is back, holding that time),
# then sends its identification and reads the spoke's KEXINIT on the same connection. OUT gets the seconds
# from the link's return until the KEXINIT, or "lost" (closed, reset) or "timeout".
HOLDER = r"""
import os, socket, sys, time
port, ready, go, out, limit = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
def done(text):
    with open(out + ".tmp", "w") as f:
        f.write(text)
    os.rename(out + ".tmp", out)
    sys.exit(0)
try:
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.settimeout(5)
    if not s.recv(256).startswith(b"SSH-"):
        done("no banner")
except OSError as e:
    done("no banner: %s" % e)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.05)
time.sleep(0.05)
since = float(open(go).read())
try:
    s.sendall(b"SSH-2.0-revtunnel-resilience\r\n")
    s.settimeout(max(1.0, since + limit - time.time()))
    data = b""
    while len(data) < 6:
        chunk = s.recv(4096)
        if not chunk:
            done("lost")
        data += chunk
except socket.timeout:
    done("timeout")
except OSError:
    done("lost")
done("%.3f" % (time.time() - since) if data[5] == 20 else "lost")
"""


def docker(*args, check=True, timeout=180):
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def sh(container, command, check=True, timeout=180):
    """Run a shell command in a container; its stdout."""
    return docker("exec", container, "sh", "-c", command, check=check, timeout=timeout)


def wait_booted(container, limit=90.0):
    """Poll until systemd in the container says running/degraded (a bounded poll, not a sleep)."""
    end = time.time() + limit
    while time.time() < end:
        state = sh(container, "systemctl is-system-running 2>/dev/null || true", check=False)
        if state in ("running", "degraded"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{container} did not boot within {limit} s")


def time_to_banner(hub, port, since, limit):
    """Seconds from SINCE until the hub reads the spoke's banner on PORT; None after LIMIT s."""
    out = docker("exec", hub, "python3", "-c", POLLER, str(since), str(limit), str(port), timeout=limit + 60)
    return None if out.endswith("timeout") else float(out.split()[-1])


def hit_stale_port(hub, port, seconds):
    """Keep connecting to the hub's port of a spoke for SECONDS, in the background."""
    docker("exec", "-d", hub, "python3", "-c", HITTER, str(seconds), str(port))


def address(container, network):
    return docker("inspect", "-f", "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % network, container)


def main_pid(container, unit):
    return sh(container, f"systemctl show -p MainPID --value {unit}")


# Each fault returns the host time at which it ended (or, for a kill, at which it was sent).

def kill_client(spoke, unit):
    """kill -9 of the spoke's tunnel ssh."""
    pid = main_pid(spoke, unit)
    if pid in ("", "0"):
        raise RuntimeError(f"{unit} on {spoke} has no main process")
    # The spoke's own clock (the host's, shared by every container) at the kill: `docker exec` takes 0.1-0.3 s to
    # start, which is not the tunnel's time to recover.
    return float(sh(spoke, f"date +%s.%N; kill -9 {pid}").split()[0])


def restart_hub_sshd(hub, service="ssh"):
    """systemctl restart of the hub's sshd (Debian's unit: KillMode=process, sessions live on)."""
    sh(hub, f"systemctl restart {service}")
    return time.time()


def kill_all_hub_sshd(hub):
    """SIGKILL to every sshd process on the hub: the listener and every session."""
    ended = time.time()
    sh(hub, "pids=$(pidof sshd sshd-session); [ -n \"$pids\" ] && kill -9 $pids")
    return ended


def restart_hub(hub):
    """docker restart of the hub container: a hub reboot."""
    docker("restart", hub, timeout=120)
    return time.time()


def reboot_spoke(spoke):
    """docker restart of the spoke container: a spoke reboot."""
    docker("restart", spoke, timeout=120)
    return time.time()


def cut_link(spoke, hub_address, seconds, network=None, new_address=None, hub=None, port=None):
    """Drop every packet between the spoke and the hub for SECONDS, both directions, then restore.

    With NEW_ADDRESS the spoke comes back on NETWORK with that address, as after a NAT reboot: the old
    flow is dead and the hub still holds the old session. With HUB and PORT the hub keeps connecting
    to the spoke's port meanwhile, which keeps sshd's ClientAlive probes from ever firing.
    """
    if hub and port:
        hit_stale_port(hub, port, seconds + 2)
    sh(spoke, f"iptables -I INPUT -s {hub_address} -j DROP && iptables -I OUTPUT -d {hub_address} -j DROP")
    time.sleep(seconds)  # the fault itself, not an assertion
    if new_address:
        docker("network", "disconnect", network, spoke)
        docker("network", "connect", "--ip", new_address, network, spoke)
    sh(spoke, f"iptables -D INPUT -s {hub_address} -j DROP && iptables -D OUTPUT -d {hub_address} -j DROP")
    return time.time()


def _block(spoke, hub_address, action, far):
    """Insert (-I) or delete (-D) the rules of a cut: both directions, or only what comes from the hub (FAR)."""
    rules = [f"iptables {action} INPUT -s {hub_address} -j DROP"]
    if not far:
        rules.append(f"iptables {action} OUTPUT -d {hub_address} -j DROP")
    sh(spoke, " && ".join(rules))


def start_holder(spoke, hub, port, tag, limit):
    """Open a connection through SPOKE's tunnel from the hub (HOLDER) and wait until it is ready or failed; its
    files (ready, go, out)."""
    files = [f"/tmp/hold-{tag}.{name}" for name in ("ready", "go", "out")]
    sh(hub, "rm -f " + " ".join(files))
    docker("exec", "-d", hub, "python3", "-c", HOLDER, str(port), *files, str(limit))
    end = time.time() + 10
    while sh(hub, f"test -e {files[0]} -o -e {files[2]} && echo yes || true") != "yes":
        if time.time() > end:
            raise TimeoutError(f"no connection through {spoke}'s tunnel (port {port}) within 10 s")
        time.sleep(0.1)
    return files


METRICS_TIMER = "revtunnel-metrics.timer"


def pause_metrics(hub):
    """Stop the hub's metrics timer if it runs (True: start it again after the cut). It reads every port every 30 s,
    which queues data on a cut session: any cut of 30 s or more would be a busy one (see busy_cut)."""
    if sh(hub, f"systemctl is-active {METRICS_TIMER} || true") != "active":
        return False
    sh(hub, f"systemctl stop {METRICS_TIMER}")
    return True


def survive_cut(spoke, hub, hub_address, port, seconds, tag, far=False, limit=120.0):
    """Cut the link for SECONDS with a connection open through the tunnel; does that connection carry on?

    Returns the seconds from the link's return until the spoke's sshd answered on the same connection, or
    None when the connection was lost (or did not answer within LIMIT s). The cut is a quiet one: the hub's metrics
    timer is paused meanwhile (a busy cut gives the port to a new session: busy_cut). The cut drops packets on the
    spoke, both directions: its kernel knows it could not send and resumes at once when the hub speaks.
    With FAR only what comes from the hub is dropped: the spoke's packets leave and are lost further on,
    as on a broken uplink, and both ends wait for TCP's retransmission backoff.
    """
    files = start_holder(spoke, hub, port, tag, limit)
    if sh(hub, f"cat {files[2]} 2>/dev/null || true"):
        raise RuntimeError(f"connection through {spoke}'s tunnel failed: {sh(hub, f'cat {files[2]}')}")
    paused = pause_metrics(hub)
    _block(spoke, hub_address, "-I", far)
    time.sleep(seconds)  # the fault itself, not an assertion
    _block(spoke, hub_address, "-D", far)
    back = time.time()
    if paused:
        sh(hub, f"systemctl start {METRICS_TIMER}")
    sh(hub, f"echo {back} >{files[1]}")
    end = back + limit + 10
    while time.time() < end:
        out = sh(hub, f"cat {files[2]} 2>/dev/null || true")
        if out:
            return float(out) if out[0].isdigit() else None
        time.sleep(0.2)
    return None


def busy_cut(spoke, hub, hub_address, port, seconds, tag, probe_every=5.0, limit=90.0):
    """Cut the link for SECONDS (dropped on the spoke, both directions) with a connection held open through the
    tunnel, while the hub reads the spoke's port every PROBE_EVERY s (None: a quiet cut, nobody probes).

    Returns (fresh, held): seconds from the link's return until a new connection through the tunnel reads the
    spoke's banner (None after LIMIT s), and until the held connection answered again (None: it was lost).
    A quiet cut stops the hub's metrics timer meanwhile: it reads every port every 30 s, which makes any longer cut
    a busy one.
    """
    files = start_holder(spoke, hub, port, tag, limit)
    paused = not probe_every and pause_metrics(hub)
    prober = f"/tmp/prober-{tag}.pid"
    if probe_every:
        docker("exec", "-d", hub, "python3", "-c", PROBER, str(seconds + 10), str(port), str(probe_every), prober)
    _block(spoke, hub_address, "-I", far=False)
    time.sleep(seconds)  # the fault itself, not an assertion
    _block(spoke, hub_address, "-D", far=False)
    back = time.time()
    if probe_every:
        # The reads end with the cut: one after it would be a fresh connection, and one in a later cut a busy one.
        sh(hub, f"kill $(cat {prober}) 2>/dev/null; rm -f {prober}", check=False)
    if paused:
        sh(hub, f"systemctl start {METRICS_TIMER}")
    sh(hub, f"echo {back} >{files[1]}")
    fresh = time_to_banner(hub, port, back, limit)
    end = back + limit + 10
    while time.time() < end:
        out = sh(hub, f"cat {files[2]} 2>/dev/null || true")
        if out:
            return fresh, float(out) if out[0].isdigit() else None
        time.sleep(0.2)
    return fresh, None


def run_site(root, inventory_text, *args, env=None, timeout=None, check=True):
    """Run the collection's site.yml from ROOT on a bench lab (ARGS: more ansible-playbook arguments).

    Returns the finished process; with CHECK a failure exits with its output. ENV adds environment variables.
    """
    import os
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    playbook = Path(sys.executable).parent / "ansible-playbook"
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(root / "collections"),
               ANSIBLE_FORCE_COLOR="0", **(env or {}))
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as directory:
        inventory = Path(directory) / "hosts.yml"
        inventory.write_text(inventory_text)
        command = [str(playbook if playbook.exists() else shutil.which("ansible-playbook")), "-i", str(inventory),
                   str(root / "site.yml"), *args]
        # Its own process group, so a run past TIMEOUT is ended with every worker it forked.
        with subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) as run:
            try:
                out, err = run.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, 9)
                run.communicate()
                raise
        proc = subprocess.CompletedProcess(command, run.returncode, out, err)
    if check and proc.returncode != 0:
        sys.exit(f"site.yml failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    return proc
