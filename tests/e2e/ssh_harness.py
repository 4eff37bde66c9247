"""Harness for tunneld end-to-end tests: a registry managed with tunnelctl, a tunneld on a free loopback port,
OpenSSH clients running `ssh -N -R ...`, and an in-process HTTP exporter serving deterministic bodies."""
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import urllib.request

import mp

SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
               "-o", "ExitOnForwardFailure=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
               "-o", "ServerAliveInterval=0", "-F", "/dev/null"]


def keygen(workdir, name, kind="ed25519"):
    path = os.path.join(workdir, name)
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", path, "-C", name]
    if kind == "rsa":
        args += ["-b", "2048"]
    subprocess.run(args, check=True)
    return path


def fingerprint(pub_path):
    out = subprocess.run(["ssh-keygen", "-lf", pub_path], check=True, capture_output=True, text=True).stdout
    return out.split()[1]


def body(size):
    """Deterministic, incompressible-enough bytes of a given size."""
    block = bytes((i * 131 + 7) % 251 for i in range(65536))
    return (block * (size // len(block) + 1))[:size]


class Exporter:
    """HTTP server on a free loopback port: GET /bytes/N returns body(N). `finished` counts the responses written
    out whole (the handler returned, so the server closes that connection next)."""

    def __init__(self):
        cache = {}
        self.finished = 0
        finished_lock = threading.Lock()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                m = re.match(r"^/bytes/(\d+)$", self.path)
                if not m:
                    self.send_error(404)
                    return
                size = int(m.group(1))
                data = cache.setdefault(size, body(size))
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                with finished_lock:
                    exporter.finished += 1

            def log_message(self, *args):
                pass

        self.port = mp.free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def endpoint(where):
    """(address, port) of a tunnel entry from `tunnelctl ls --json` (its forward's own loopback address), or of
    a plain port on 127.0.0.1."""
    if isinstance(where, dict):
        return where["address"], where["port"]
    return "127.0.0.1", where


def fetch(where, path, timeout=30):
    host, port = endpoint(where)
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
        return r.read()


class Tunneld:
    """A registry plus a running tunneld. Use `start()` again after stopping to restart on the same state."""

    def __init__(self, procs, workdir, port_range=None, extra=()):
        self.procs = procs
        self.workdir = workdir
        self.registry = os.path.join(workdir, "registry")
        self.host_keys = os.path.join(workdir, "hostkeys")
        self.port_range = port_range or _pick_port_range()
        self.extra = list(extra)
        self.port = None
        self.proc = None
        self.tunnelctl_path = mp.program("tunnelctl")
        self.tunneld_path = mp.program("tunneld")

    def tunnelctl(self, *args, check=True):
        r = subprocess.run([self.tunnelctl_path, "--registry", self.registry, *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"tunnelctl {args} failed: {r.returncode} {r.stderr}")
        return r

    def start(self, extra=(), same_port=False):
        """`same_port`: listen where the previous run did (hosts configured with this proxy's port reconnect)."""
        if not (same_port and self.port):
            self.port = mp.free_port()
        args = [self.tunneld_path, "--listen", f"127.0.0.1:{self.port}", "--registry", self.registry,
                "--host-key-dir", self.host_keys, "--port-range", f"{self.port_range[0]}-{self.port_range[1]}",
                *self.extra, *extra]
        self.proc = self.procs.start(args, name="tunneld")
        mp.wait_until(lambda: " started " in self.log() or self.proc.poll() is not None, 10, what="tunneld start")
        assert self.proc.poll() is None, self.log()
        return self

    def log(self):
        return mp.Processes.log_text(self.proc)

    def wait_log(self, text, timeout=10):
        mp.wait_until(lambda: text in self.log(), timeout, what=f"log line containing {text!r}")
        return self.log()

    def stop(self, sig=signal.SIGTERM):
        return self.procs.stop(self.proc, sig)

    def ls(self):
        return json.loads(self.tunnelctl("ls", "--json").stdout)

    def entry(self, name):
        for e in self.ls():
            if e["name"] == name:
                return e
        return None

    def connected(self, name):
        e = self.entry(name)
        return e if e and e["state"] == "connected" else None

    def counters(self):
        """tunneld's counters (`name{label="v"}` -> int), as `tunnelctl counters --json` prints them."""
        r = self.tunnelctl("counters", "--json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else {}

    def ssh(self, key, *forwards, user="tunnel", extra=(), name="ssh"):
        # ssh keeps the first value given for an option: the test's own options go first.
        args = ["ssh", "-N", *extra, *SSH_OPTIONS, "-i", key, "-p", str(self.port)]
        for f in forwards:
            args += ["-R", f]
        args += [f"{user}@127.0.0.1"]
        return self.procs.start(args, name=name)

    def ssh_run(self, key, *args, user="tunnel", command=(), timeout=20):
        """Runs a short-lived ssh client to completion; returns CompletedProcess."""
        cmd = ["ssh", *args, *SSH_OPTIONS, "-i", key, "-p", str(self.port), f"{user}@127.0.0.1", *command]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _pick_port_range(size=200):
    """A tunnel port range below the kernel's ephemeral range (outgoing connections would otherwise take ports a
    test later wants to listen on) and away from tunneld's default 20000-29999, starting where nothing listens."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_lo = int(f.read().split()[0])
    top = max(ephemeral_lo - size, 11000)
    for attempt in range(50):
        lo = 10000 + (os.getpid() * 37 + attempt * 997) % (top - 10000)
        if 20000 - size <= lo < 30000:
            continue
        if all(_port_free(p) for p in (lo, lo + 1, lo + 3, lo + 5, lo + 7)):
            return (lo, lo + size - 1)
    return (lo, lo + size - 1)


def _port_free(port):
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
