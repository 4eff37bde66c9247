"""A real N-member etcd 3.4 cluster on free loopback ports for end-to-end tests. Every member is started from the
operator configuration shipped in docker/etcd/etcd.conf.yml (auto-compaction, quota, logger), with only the
member-specific keys (name, data directory, URLs, initial cluster) replaced, so the shipped file is the tested
one. Members are killed and restarted by pid; `stop_all` ends them at teardown (the `procs` fixture would too)."""
import base64
import json
import os
import re
import signal
import subprocess
import urllib.request

import mp

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
SHIPPED_CONFIG = os.path.join(mp.SOURCE_DIR, "docker", "etcd", "etcd.conf.yml")
MEMBER_KEYS = ("name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
               "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-token", "initial-cluster-state")


def member_config(shipped_text, overrides):
    """The shipped configuration with the top-level `key: value` lines of `overrides` replaced (each key must be
    present in the shipped file: a renamed key would otherwise silently fall back to etcd's default)."""
    out, seen = [], set()
    for line in shipped_text.splitlines():
        m = re.match(r"^([a-z-]+):", line)
        if m and m.group(1) in overrides:
            key = m.group(1)
            seen.add(key)
            line = f"{key}: {json.dumps(overrides[key])}"  # a JSON string is a YAML string
        out.append(line)
    missing = set(overrides) - seen
    assert not missing, f"{SHIPPED_CONFIG} lacks the keys {sorted(missing)}"
    return "\n".join(out) + "\n"


class Member:
    def __init__(self, name, workdir):
        self.name = name
        self.client_port = mp.free_port()
        self.peer_port = mp.free_port()
        self.dir = os.path.join(workdir, "etcd", name)
        self.data_dir = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "etcd.conf.yml")
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)

    @property
    def client_url(self):
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def healthy(self):
        """etcd's own /health: true once this member has a leader and serves reads (a member of a cluster that
        lost quorum answers false)."""
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False


class EtcdCluster:
    """`size` members on loopback. `endpoints` is the value for --etcd / $MONITORING_PROXY_ETCD."""

    def __init__(self, procs, workdir, size=3, token=None):
        self.procs = procs
        self.members = [Member(f"etcd{i}", workdir) for i in range(size)]
        self.token = token or f"mp-test-{os.getpid()}-{mp.free_port()}"
        with open(SHIPPED_CONFIG) as f:
            self.shipped = f.read()
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            with open(m.config, "w") as f:
                f.write(member_config(self.shipped, {
                    "name": m.name, "data-dir": m.data_dir,
                    "listen-client-urls": m.client_url, "advertise-client-urls": m.client_url,
                    "listen-peer-urls": m.peer_url, "initial-advertise-peer-urls": m.peer_url,
                    "initial-cluster": initial, "initial-cluster-token": self.token,
                    "initial-cluster-state": "new"}))

    @property
    def endpoints(self):
        return ",".join(m.client_url for m in self.members)

    def start(self, timeout=30):
        for m in self.members:
            self._launch(m)
        self.wait_healthy(timeout)
        return self

    def _launch(self, m):
        # A restarted member finds its data directory and rejoins; the initial-cluster keys are then ignored.
        m.proc = self.procs.start([ETCD, "--config-file", m.config], name=m.name)

    def wait_healthy(self, timeout=30, members=None):
        members = self.members if members is None else members
        for m in members:
            mp.wait_until(lambda: m.healthy() or not m.running(), timeout=timeout, what=f"{m.name} healthy")
            assert m.running(), f"{m.name} exited {m.proc.returncode}:\n{self.log(m)[-3000:]}"

    def kill(self, index, sig=signal.SIGKILL, timeout=30):
        """Kills one member by pid (SIGKILL: no goodbye to its peers). While a quorum is left, returns once the
        others are healthy again (after an election, if it was the leader), so the caller starts from a cluster
        that serves writes."""
        m = self.members[index]
        self.procs.stop(m.proc, sig)
        left = [x for x in self.members if x.running()]
        if len(left) > len(self.members) // 2:
            self.wait_healthy(timeout, left)
        return m

    def restart(self, index, timeout=30):
        m = self.members[index]
        assert not m.running(), f"{m.name} still runs"
        self._launch(m)
        self.wait_healthy(timeout, [m])
        return m

    def stop_all(self, sig=signal.SIGTERM):
        for m in self.members:
            if m.running():
                self.procs.stop(m.proc, sig)

    def start_all_stopped(self, timeout=30):
        """Restarts every stopped member at once (a lone member cannot become healthy without a quorum)."""
        stopped = [m for m in self.members if not m.running()]
        for m in stopped:
            self._launch(m)
        self.wait_healthy(timeout, stopped)

    def log(self, m):
        return mp.Processes.log_text(m.proc) if m.proc else ""

    def etcdctl(self, *args, check=True, endpoints=None, timeout=20):
        env = {**os.environ, "ETCDCTL_API": "3"}
        r = subprocess.run([ETCDCTL, "--endpoints", endpoints or self.endpoints, "--command-timeout=5s", *args],
                           capture_output=True, text=True, env=env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"etcdctl {args} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def endpoints_running(self):
        return ",".join(m.client_url for m in self.members if m.running())

    def put(self, key, value):
        """Writes `value` (text or raw bytes, NULs included: it goes through etcdctl's stdin) at `key`."""
        data = value if isinstance(value, bytes) else value.encode()
        r = subprocess.run([ETCDCTL, "--endpoints", self.endpoints_running(), "--command-timeout=5s", "put", key],
                           input=data, capture_output=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=20)
        assert r.returncode == 0, f"etcdctl put {key} exited {r.returncode}: {r.stderr!r}"

    def get_bytes(self, key):
        r = self.etcdctl("get", key, "-w", "json", endpoints=self.endpoints_running())
        kvs = json.loads(r.stdout).get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def get_prefix(self, prefix):
        """{key: value} of every key under `prefix` (values as text)."""
        r = self.etcdctl("get", "--prefix", prefix, "-w", "json", endpoints=self.endpoints_running())
        kvs = json.loads(r.stdout).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode(errors="replace"):
                base64.b64decode(kv.get("value", "")).decode(errors="replace") for kv in kvs}

    def revision(self):
        r = self.etcdctl("endpoint", "status", "-w", "json", endpoints=self.endpoints_running())
        return max(e["Status"]["header"]["revision"] for e in json.loads(r.stdout))

    def compact(self):
        """Compacts the whole history up to the current revision (what auto-compaction does, now)."""
        rev = self.revision()
        self.etcdctl("compact", str(rev), endpoints=self.endpoints_running())
        return rev


def etcd_processes_below(pid):
    """Pids of etcd processes descending from `pid` (this test run's own etcd members)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                after = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except (OSError, IndexError):
            continue
        children.setdefault(int(after[1]), []).append((int(entry), comm))
    found, todo = [], [pid]
    while todo:
        for child, comm in children.get(todo.pop(), []):
            todo.append(child)
            if comm == "etcd":
                found.append(child)
    return found
