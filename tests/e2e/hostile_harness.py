"""Harness for the hostile-input and fault suite: one healthy stack per test module — a registry the
nginx workers can read, tunneld, nginx with the module, an exporter and a real `ssh -N -R` tunnel — and a bounded
background scrape loop through that tunnel. Every hostile case runs while the loop scrapes; the loop must see zero
errors, which is what "a misbehaving client never takes the other hosts' tunnels down" means in a test."""
import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

import mp
import nginx_harness as h
from ssh_harness import Exporter, Tunneld, body, fingerprint, keygen

HEALTHY = "healthy"
SCRAPE_SIZE = 48 * 1024  # big enough to need several channel windows' worth of packets, small enough to be fast
COUNTERS_LOCATION = "        location = /-/counters { tunnel_counters; }"


class ScrapeLoop:
    """Scrapes GET /<target>/bytes/N through nginx in a thread until stopped (or `max_seconds`, so a forgotten
    loop cannot hang the suite) and checks every byte. `errors` lists what went wrong, with the time it ended;
    `ok_times` when each good scrape started."""

    def __init__(self, nginx_port, target=HEALTHY, size=SCRAPE_SIZE, max_seconds=120, timeout=10):
        self.nginx_port = nginx_port
        self.path = f"/{target}/bytes/{size}"
        self.expected = body(size)
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.ok_times = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        # At least one good scrape before the hostile part starts: the loop proves something only once it works.
        mp.wait_until(lambda: self.ok > 0 or self.errors, 15, what="first scrape")
        assert self.ok > 0, f"the first scrape of {self.path} failed: {self.errors}"
        return self

    @property
    def ok(self):
        """Good scrapes so far."""
        return len(self.ok_times)

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            started, started_wall = time.monotonic(), time.time()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.nginx_port, timeout=self.timeout)
                try:
                    conn.request("GET", self.path)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if resp.status != 200 or data != self.expected:
                    self.errors.append((time.time(), f"status {resp.status}, {len(data)} bytes"))
                else:
                    self.ok_times.append(started_wall)
            except Exception as exc:  # every failure is a finding: count it, keep scraping
                self.errors.append((time.time(), f"{exc!r} after {time.monotonic() - started:.2f}s"))
            self._stop.wait(0.01)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)
        return self

    def assert_clean(self):
        assert not self._thread.is_alive(), "scrape loop still running"
        assert self.ok > 0, "the scrape loop never succeeded"
        assert not self.errors, f"{len(self.errors)} failed scrapes (of {self.ok + len(self.errors)}): " \
                                f"{self.errors[:5]}"


class Stack:
    """tunneld + nginx + exporter + one healthy `ssh -N -R healthy:80:...` client, sharing one registry.

    Keys: `healthy` (bound to target healthy), `owner` (bound to target `owned`, never connected unless a test
    does), `shared` (authorized_keys, may serve declared unbound targets), `restricted` (authorized_keys with a
    from= that never matches loopback). Target `open` is declared, unbound, with a fixed port."""

    def __init__(self, workdir, procs, tunneld_extra=(), nginx_workers=2):
        self.workdir = workdir
        self.procs = procs
        self.env = h.Env(workdir, procs)
        self.registry = self.env.registry
        self.keys = {name: keygen(workdir, name) for name in ("healthy", "owner", "shared", "restricted")}
        self.registry.add(HEALTHY, "--key-file", self.keys["healthy"] + ".pub")
        self.registry.add("owned", "--key-file", self.keys["owner"] + ".pub")
        self.exporter = Exporter()
        self.tunneld = Tunneld(procs, workdir, extra=list(tunneld_extra))
        self.open_port = self.tunneld.port_range[0] + 3
        self.registry.add("open", "--port", str(self.open_port))
        self.authorized_keys = os.path.join(workdir, "authorized_keys")
        with open(self.authorized_keys, "w") as f:
            f.write(open(self.keys["shared"] + ".pub").read())
            f.write('from="10.0.0.0/8" ' + open(self.keys["restricted"] + ".pub").read())
        self.tunneld.extra += ["--authorized-keys", self.authorized_keys]
        self.tunneld.start()
        self.nginx = self.env.nginx(workers=nginx_workers, server_extra=COUNTERS_LOCATION).start()
        self.healthy_client = None
        self.connect_healthy()

    def connect_healthy(self):
        self.healthy_client = self.tunneld.ssh(self.keys["healthy"], f"{HEALTHY}:80:127.0.0.1:{self.exporter.port}",
                                               name="ssh-healthy")
        mp.wait_until(lambda: self.tunneld.connected(HEALTHY), 15, what="healthy tunnel connected")
        mp.wait_until(lambda: self.nginx.status(f"/{HEALTHY}/bytes/1") == 200, 15, what="healthy served")

    def scrape_loop(self, **kw):
        return ScrapeLoop(self.nginx.port, **kw)

    def fingerprint(self, key_name):
        return fingerprint(self.keys[key_name] + ".pub")

    def counter(self, key):
        return self.tunneld.counters().get(key, 0)

    def wait_counter(self, key, at_least, timeout=10):
        """tunneld flushes its counters about once a second."""
        return mp.wait_until(lambda: self.counter(key) >= at_least and self.counter(key), timeout,
                             what=f"counter {key} >= {at_least} (now {self.counter(key)})")

    def log_since(self, mark):
        return self.tunneld.log()[mark:]

    def log_mark(self):
        return len(self.tunneld.log())

    def wait_log_since(self, mark, text, timeout=10):
        return mp.wait_until(lambda: text in self.log_since(mark) and self.log_since(mark), timeout,
                             what=f"tunneld log line containing {text!r}")

    def nginx_counters(self):
        status, text, _ = self.nginx.get("/-/counters")
        assert status == 200, text
        return json.loads(text)

    def registry_names(self):
        return sorted(e["name"] for e in self.tunneld.ls())

    def assert_alive(self):
        assert self.tunneld.proc.poll() is None, "tunneld died:\n" + self.tunneld.log()[-3000:]
        for line in self.tunneld.log().splitlines():
            assert "AddressSanitizer" not in line and "runtime error:" not in line, line

    def close(self):
        try:
            self.env.close()  # stops nginx, asserts its log has no [alert]/[emerg] and no dead worker
        finally:
            self.exporter.close()


def listeners_on(port):
    """Local addresses listening on a TCP port (`ss -ltn`)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def raw_connect(port, timeout=5, source=None):
    """A TCP connection to 127.0.0.1:port, from the loopback address `source` if given (tunneld limits
    unauthenticated connections per address)."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0) if source else None)


def login_with_retries(stack, key_name, forward, target, attempts=20):
    """`ssh -N -R forward` started again until it serves `target`, as autossh would: while many connections have
    not authenticated, tunneld refuses some new ones at random (random early drop). Returns the ssh process."""
    for _ in range(attempts):
        client = stack.tunneld.ssh(stack.keys[key_name], forward, name=f"ssh-{key_name}")
        mp.wait_until(lambda: client.poll() is not None or stack.tunneld.connected(target), 15,
                      what=f"{target} connected or its ssh refused")
        if client.poll() is None:
            return client
    raise AssertionError(f"{target}: no login in {attempts} attempts")


def read_until_closed(sock, limit=1 << 16, timeout=10):
    """Everything the peer sends until it closes (or the deadline); b'' chunks end it, resets count as closed."""
    sock.settimeout(0.5)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(data) < limit:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


# A tiny libssh client for what OpenSSH's client will not do against a server that offers only publickey:
# actually send a password or keyboard-interactive request. Compiled once per test run into the work dir.
AUTH_PROBE_C = r"""
#include <libssh/libssh.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: auth_probe PORT USER password|kbdint|none TRIES\n"); return 64; }
    ssh_session s = ssh_new();
    int port = atoi(argv[1]), tries = atoi(argv[4]), verbosity = 0;
    ssh_options_set(s, SSH_OPTIONS_HOST, "127.0.0.1");
    ssh_options_set(s, SSH_OPTIONS_PORT, &port);
    ssh_options_set(s, SSH_OPTIONS_USER, argv[2]);
    ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
    if (ssh_connect(s) != SSH_OK) { printf("connect_error %s\n", ssh_get_error(s)); return 2; }
    for (int i = 0; i < tries; i++) {
        int rc;
        if (!strcmp(argv[3], "password")) rc = ssh_userauth_password(s, NULL, "hunter2");
        else if (!strcmp(argv[3], "kbdint")) rc = ssh_userauth_kbdint(s, NULL, NULL);
        else rc = ssh_userauth_none(s, NULL);
        const char *r = rc == SSH_AUTH_SUCCESS ? "success" : rc == SSH_AUTH_DENIED ? "denied"
                      : rc == SSH_AUTH_PARTIAL ? "partial" : rc == SSH_AUTH_INFO ? "info" : "error";
        int methods = ssh_userauth_list(s, NULL);
        printf("attempt=%d result=%s methods=%d connected=%d\n", i, r, methods, ssh_is_connected(s));
        fflush(stdout);
        if (rc == SSH_AUTH_ERROR || rc == SSH_AUTH_SUCCESS) break;
    }
    ssh_disconnect(s);
    ssh_free(s);
    return 0;
}
"""


def auth_probe(workdir):
    path = os.path.join(workdir, "auth_probe")
    if not os.path.exists(path):
        src = path + ".c"
        with open(src, "w") as f:
            f.write(AUTH_PROBE_C)
        subprocess.run(["cc", "-O1", "-o", path, src, "-lssh"], check=True, capture_output=True, timeout=120)
    return path


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stack_fixture_body(**kw):
    """Body of a module-scoped `stack` fixture: one healthy stack for every case of a test file (starting one
    per case would cost the suite minutes), torn down by pid at the end."""
    workdir = mp.make_workdir("mp-hostile-")
    procs = mp.Processes(workdir)
    saved = os.environ.get("MONITORING_PROXY_REGISTRY_GROUP")
    # tunneld applies the registry permission policy at start: with the workers' group, or they lose access
    os.environ["MONITORING_PROXY_REGISTRY_GROUP"] = h.REGISTRY_GROUP
    stack = None
    try:
        stack = Stack(workdir, procs, **kw)
        yield stack
    finally:
        try:
            if stack is not None:
                stack.close()
        finally:
            procs.stop_all()
            if saved is None:
                os.environ.pop("MONITORING_PROXY_REGISTRY_GROUP", None)
            else:
                os.environ["MONITORING_PROXY_REGISTRY_GROUP"] = saved
            if os.environ.get("MP_HOSTILE_KEEP"):  # for a post-mortem of a failed run: logs stay
                print(f"hostile stack work dir kept: {workdir}")
            else:
                mp.remove_workdir(workdir)


def scraping_fixture_body(stack):
    """Body of the per-case `scraping` fixture: the loop runs during the case and must end with zero errors."""
    loop = stack.scrape_loop().start()
    try:
        yield loop
    finally:
        loop.stop()
    stack.assert_alive()
    loop.assert_clean()


@pytest.fixture(scope="module")
def stack():
    """The healthy stack a test file's hostile cases run beside (import it: `from hostile_harness import stack,
    scraping`); a file needing other tunneld flags defines its own with stack_fixture_body(tunneld_extra=...)."""
    yield from stack_fixture_body()


@pytest.fixture
def scraping(stack):
    """The scrape loop through the healthy tunnel: zero errors during the case."""
    yield from scraping_fixture_body(stack)


def restart_tunneld_on_same_port(stack):
    """Starts tunneld again on the port it had (clients such as autossh reconnect to the same address)."""
    t = stack.tunneld
    args = [t.tunneld_path, "--listen", f"127.0.0.1:{t.port}", "--registry", t.registry,
            "--host-key-dir", t.host_keys, "--port-range", f"{t.port_range[0]}-{t.port_range[1]}", *t.extra]
    t.proc = t.procs.start(args, name="tunneld")
    mp.wait_until(lambda: " started " in t.log() or t.proc.poll() is not None, 10, what="tunneld restart")
    assert t.proc.poll() is None, t.log()


def autossh(stack, key_name, forward, name="autossh"):
    """autossh restarting `ssh -N -R` as soon as it exits (gate time 0), with client-side keepalives."""
    from ssh_harness import SSH_OPTIONS
    args = ["autossh", "-M", "0", "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2", "-N",
            *SSH_OPTIONS, "-i", stack.keys[key_name], "-p", str(stack.tunneld.port), "-R", forward,
            "tunnel@127.0.0.1"]
    return stack.procs.start(args, name=name, env={"AUTOSSH_GATETIME": "0", "AUTOSSH_POLL": "5"})
