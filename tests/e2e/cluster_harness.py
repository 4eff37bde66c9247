"""A monitoring-proxy cluster for end-to-end tests: N proxies (each a tunneld with --etcd and its own registry
directory, SSH port and tunnel port range, plus nginx with the module reading that registry) on one real etcd
cluster (etcd_harness), hosts keeping their tunnel up to any proxy with docker/host/monitoring-proxy-tunnel (plain
OpenSSH `ssh -N -R`), and one SSH host key shared by every proxy, strictly checked by the hosts."""
import json
import os
import re
import shutil
import signal

import mp
import nginx_harness
import ssh_harness

PAGES = """
        location = /-/sd { tunnel_sd; }
        location = /-/metrics { tunnel_metrics; }
        location = /-/status { tunnel_status; }
"""
TUNNEL_SCRIPT = os.path.join(mp.SOURCE_DIR, "docker", "host", "monitoring-proxy-tunnel")
PREFIX = "/monitoring-proxy/"


def cluster_support():
    """(built with cluster support?, why not). Off only when the build was configured with -DMP_CLUSTER=OFF."""
    cache = os.path.join(mp.BUILD_DIR, "CMakeCache.txt")
    if os.path.exists(cache):
        m = re.search(r"^MP_CLUSTER:BOOL=(\S+)$", open(cache).read(), re.M)
        if m and m.group(1).upper() in ("OFF", "0", "NO", "FALSE", "N"):
            return False, f"the build in {mp.BUILD_DIR} was configured with -DMP_CLUSTER=OFF (no etcd client)"
    return True, ""


class Proxy:
    """tunneld --etcd + nginx, as on one machine. `kill()` is that machine dying (SIGKILL to tunneld and to every
    nginx process); `start()` again brings it back on the same ports and registry."""

    def __init__(self, procs, workdir, node_id, etcd, host_key, lease_ttl=3, keepalive=1, extra=()):
        self.procs = procs
        self.node_id = node_id
        self.etcd = etcd
        self.dir = os.path.join(workdir, node_id)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)  # nginx workers (nobody) traverse it to the registry
        self.tunneld = ssh_harness.Tunneld(procs, self.dir)
        os.makedirs(self.tunneld.host_keys, mode=0o700)
        for suffix in ("", ".pub"):  # the same host key on every proxy: hosts behind one name see one identity
            shutil.copy(host_key + suffix, os.path.join(self.tunneld.host_keys, "ssh_host_ed25519_key" + suffix))
        self.nginx = nginx_harness.Nginx(procs, self.dir, self.tunneld.registry, server_extra=PAGES)
        self.http = f"127.0.0.1:{self.nginx.port}"
        self.tunneld.extra = ["--etcd", etcd.endpoints, "--node-id", node_id, "--advertise-http", self.http,
                              "--lease-ttl", str(lease_ttl), "--keepalive", str(keepalive), *extra]

    @property
    def ssh_port(self):
        return self.tunneld.port

    def start(self, timeout=15):
        self.tunneld.start(same_port=True)
        self.tunneld.wait_log("cluster connected", timeout)
        if not (self.nginx.proc and self.nginx.proc.poll() is None):  # a restarted tunneld alone keeps its nginx
            self.nginx.start()
        return self

    def kill(self):
        workers = self.nginx.worker_pids() if self.nginx.proc and self.nginx.proc.poll() is None else []
        self.tunneld.stop(signal.SIGKILL)
        self.procs.stop(self.nginx.proc, signal.SIGKILL)
        for pid in workers:  # orphaned workers would go on serving the listening socket
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        mp.wait_until(lambda: not mp.port_open(self.nginx.port), timeout=10, what=f"{self.node_id}'s nginx gone")

    def stop(self):
        self.nginx.stop()
        self.tunneld.stop()

    def log(self):
        return self.tunneld.log()

    def log_lines(self, *words):
        """tunneld's log lines containing every one of `words`."""
        return [line for line in self.log().splitlines() if all(w in line for w in words)]

    def wait_forward(self, name, event="forward added", timeout=10):
        """Waits for tunneld's `forward added ... target=NAME` (or another event) line; returns it."""
        return mp.wait_until(lambda: self.log_lines(event, f"target={name} ") or
                             [line for line in self.log_lines(event) if line.endswith(f"target={name}")],
                             timeout, what=f"{event} target={name} on {self.node_id}")[-1]

    def tunnelctl(self, *args, check=True):
        """tunnelctl on this proxy, operating on the cluster (--etcd)."""
        return self.tunneld.tunnelctl("--etcd", self.etcd.endpoints, *args, check=check)

    def get(self, path, headers=None, timeout=15):
        return self.nginx.get(path, headers=headers, timeout=timeout)

    def fetch(self, path, headers=None, timeout=15):
        """Raw bytes of a GET through this proxy's nginx: (status, body bytes)."""
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def sd(self):
        """/-/sd as parsed JSON, and the raw bytes."""
        status, body = self.fetch("/-/sd")
        assert status == 200, (status, body)
        return json.loads(body), body

    def sd_names(self):
        return sorted(g["labels"]["tunnel"] for g in self.sd()[0])

    def status_json(self):
        status, body, _ = self.get("/-/status?format=json")
        assert status == 200, (status, body)
        return json.loads(body)

    def metrics(self):
        status, body, _ = self.get("/-/metrics")
        assert status == 200, (status, body)
        return body

    def ls(self):
        return json.loads(self.tunnelctl("ls", "--json").stdout)

    def node_of(self, name):
        """The node holding `name`'s tunnel, as `tunnelctl --etcd ls --json` on this proxy tells it (None: none)."""
        for e in self.ls():
            if e["name"] == name:
                return e.get("node") or None
        return None


class Cluster:
    """Proxies named a, b, c ... on one etcd cluster, sharing one host key; hosts through `host()`."""

    def __init__(self, procs, workdir, etcd, size=3, **proxy_kw):
        self.procs = procs
        self.workdir = workdir
        self.etcd = etcd
        self.host_key = ssh_harness.keygen(workdir, "proxy_host_key")
        self.proxies = [Proxy(procs, workdir, f"proxy-{chr(ord('a') + i)}", etcd, self.host_key, **proxy_kw)
                        for i in range(size)]
        self.hosts = []

    def start(self):
        for p in self.proxies:
            p.start()
        return self

    def __getitem__(self, i):
        return self.proxies[i]

    def known_hosts(self):
        """A known_hosts file naming the one shared host key for every proxy's [127.0.0.1]:port."""
        path = os.path.join(self.workdir, "known_hosts")
        key = open(self.host_key + ".pub").read().split()[:2]
        names = ",".join(f"[127.0.0.1]:{p.ssh_port}" for p in self.proxies)
        with open(path, "w") as f:
            f.write(f"{names} {key[0]} {key[1]}\n")
        return path

    def host(self, key, name, exporter_port, proxies, keepalive=1, user="monitoring"):
        """A host keeping `-R name:80:127.0.0.1:exporter_port` up to the first reachable of `proxies` (in order),
        with strict host key checking against known_hosts(). Returns the wrapper's process."""
        dests = [f"{user}@127.0.0.1:{p.ssh_port}" for p in proxies]
        args = [TUNNEL_SCRIPT, "-w", "0.2", *dests, "--",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts()}",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-F", "/dev/null",
                "-o", f"ServerAliveInterval={keepalive}", "-o", "ServerAliveCountMax=2",
                "-i", key, "-R", f"{name}:80:127.0.0.1:{exporter_port}"]
        p = self.procs.start(args, name=f"host-{name}")
        self.hosts.append(p)
        return p

    def ssh(self, proxy, key, name, exporter_port, user="monitoring"):
        """One plain `ssh -N -R` session to one proxy (no reconnects)."""
        return proxy.tunneld.ssh(key, f"{name}:80:127.0.0.1:{exporter_port}", user=user, name=f"ssh-{name}")

    def alive(self):
        return [p for p in self.proxies if p.tunneld.proc is not None and p.tunneld.proc.poll() is None]

    def by_id(self, node_id):
        return next(p for p in self.proxies if p.node_id == node_id)

    def stop(self):
        for h in self.hosts:
            self.procs.stop(h)
        for p in self.proxies:
            p.stop()

    def assert_clean_logs(self):
        for p in self.proxies:
            p.nginx.assert_clean_log()


def declare_and_connect(cluster, workdir, exporter, proxy, name):
    """Declares `name` with a new key and connects its host to `proxy`; returns (key path, ssh client)."""
    key = ssh_harness.keygen(workdir, name)
    proxy.tunnelctl("add", name, "--key-file", key + ".pub")
    # The proxy accepts the key once its mirror has the declaration (ms, more through a slow path to etcd).
    mp.wait_until(lambda: name in proxy.sd_names(), 5, what=f"{proxy.node_id} knows {name}")
    client = cluster.ssh(proxy, key, name, exporter.port)
    proxy.wait_forward(name)
    return key, client


def served_everywhere(cluster, name, proxies=None):
    """Whether `name` answers its exporter's exact bytes through every proxy (or those given)."""
    return all(p.fetch(f"/{name}/bytes/100", timeout=3) == (200, ssh_harness.body(100))
               for p in proxies or cluster.proxies)


def etcd_up(proxy):
    """The proxy's monitoring_proxy_cluster_etcd_up gauge (1 connected, 0 degraded)."""
    return mp.metric_value(proxy.metrics(), "monitoring_proxy_cluster_etcd_up")
