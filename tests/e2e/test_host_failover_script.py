"""docker/host/monitoring-proxy-tunnel, the host side of a cluster: keeps one reverse tunnel up to the first
reachable of several proxies, moving on to the next one at once when a session ends, and checking every proxy's
host key strictly (one key shared by all proxies, or all their keys in known_hosts). Driven here against plain
single-node tunnelds (the script knows nothing of etcd); the cluster suite uses it against cluster proxies."""
import os
import shutil
import signal
import subprocess

import mp
import ssh_harness as s
from cluster_harness import TUNNEL_SCRIPT


def proxies(procs, workdir, count, host_key, prefix="p"):
    out = []
    for i in range(count):
        d = os.path.join(workdir, f"{prefix}{i}")
        os.makedirs(d)
        t = s.Tunneld(procs, d)
        os.makedirs(t.host_keys, mode=0o700)
        for suffix in ("", ".pub"):
            shutil.copy(host_key + suffix, os.path.join(t.host_keys, "ssh_host_ed25519_key" + suffix))
        out.append(t)
    return out


def wrapper(procs, workdir, tunnelds, key, exporter_port, known_hosts):
    return procs.start([TUNNEL_SCRIPT, "-w", "0.2", *[f"m@127.0.0.1:{t.port}" for t in tunnelds], "--",
                        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
                        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-F", "/dev/null",
                        "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2",
                        "-i", key, "-R", f"web1:80:127.0.0.1:{exporter_port}"], name="host")


def known_hosts_file(workdir, tunnelds, pub):
    path = os.path.join(workdir, "known_hosts")
    kind, blob = open(pub).read().split()[:2]
    with open(path, "w") as f:
        f.write(",".join(f"[127.0.0.1]:{t.port}" for t in tunnelds) + f" {kind} {blob}\n")
    return path


def test_moves_to_the_next_proxy_when_a_session_ends(workdir, procs, exporter):
    host_key = s.keygen(workdir, "shared_host_key")
    tunnelds = proxies(procs, workdir, 3, host_key)
    key = s.keygen(workdir, "web1")
    for t in tunnelds:
        t.tunnelctl("add", "web1", "--key-file", key + ".pub")
    # The first proxy is down when the host starts: it goes on to the second.
    tunnelds[1].start()
    tunnelds[2].start()
    tunnelds[0].port = mp.free_port()
    host = wrapper(procs, workdir, tunnelds, key, exporter.port, known_hosts_file(workdir, tunnelds, host_key + ".pub"))
    tunnelds[1].wait_log("forward added")
    assert s.fetch(tunnelds[1].connected("web1"), "/bytes/100") == s.body(100)
    # That proxy dies: the session ends with it and the host is on the third within seconds.
    tunnelds[1].stop(signal.SIGKILL)
    tunnelds[2].wait_log("forward added", timeout=10)
    assert s.fetch(tunnelds[2].connected("web1"), "/bytes/100") == s.body(100)
    assert host.poll() is None
    # SIGTERM stops the script and its ssh.
    procs.stop(host)
    assert host.returncode == 0
    tunnelds[2].wait_log("forward removed")


def test_a_proxy_with_another_host_key_is_never_used(workdir, procs, exporter):
    host_key = s.keygen(workdir, "shared_host_key")
    impostor_key = s.keygen(workdir, "impostor_host_key")
    impostor, = proxies(procs, workdir, 1, impostor_key, prefix="impostor")
    genuine, = proxies(procs, workdir, 1, host_key, prefix="genuine")
    key = s.keygen(workdir, "web1")
    for t in (impostor, genuine):
        t.tunnelctl("add", "web1", "--key-file", key + ".pub")
        t.start()
    host = wrapper(procs, workdir, [impostor, genuine], key, exporter.port,
                   known_hosts_file(workdir, [impostor, genuine], host_key + ".pub"))
    genuine.wait_log("forward added")
    # ssh stopped at the impostor's host key, before offering the client key.
    assert "Host key verification failed" in mp.Processes.log_text(host)
    assert f"fingerprint={s.fingerprint(key + '.pub')}" not in impostor.log()


def test_usage_errors(workdir):
    for args in ([], ["m@h"], ["--", "-i", "k"], ["-w"]):
        r = subprocess.run([TUNNEL_SCRIPT, *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and "usage:" in r.stderr, (args, r)
