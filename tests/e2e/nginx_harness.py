"""nginx with ngx_http_tunnel_module for end-to-end tests: a prefix directory holding the config, pid file, logs
and temp paths; a registry the workers (nobody:nogroup) can read; a Python HTTP backend that records what it
sees; and helpers to declare targets (tunnelctl) and fake live tunnels (mp-registry-fixture)."""
import http.client
import http.server
import os
import re
import signal
import socketserver
import stat
import subprocess
import threading
import urllib.parse

import mp

NGINX = "/usr/sbin/nginx"
REGISTRY_GROUP = "nogroup"  # nginx as root runs its workers as nobody:nogroup
REGISTRY_ENV = {"MONITORING_PROXY_REGISTRY_GROUP": REGISTRY_GROUP}

CONF_TEMPLATE = """\
load_module {module};
{env_lines}daemon {daemon};
master_process on;
worker_processes {workers};
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    {registry_line}
{http_extra}
    upstream tunnels {{
{upstream_body}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout {read_timeout};
{location_extra}
            proxy_pass http://tunnels$tunnel_uri$is_args$args;
        }}
{server_extra}
    }}
}}
"""


def sanitizer_env(module):
    """A module built with -DMP_SANITIZE=ON needs the ASan runtime loaded first into the (uninstrumented) nginx,
    and libstdc++ with it: ASan resolves the real __cxa_throw at startup, and without libstdc++ loaded by then the
    first C++ exception aborts the worker. nginx frees its pools at exit on purpose: leak reports are noise."""
    libs = {}
    for line in subprocess.run(["ldd", module], capture_output=True, text=True).stdout.splitlines():
        if "=>" in line:
            name, path = line.split("=>")[0].strip(), line.split("=>")[1].split()[0]
            libs[name.split(".so")[0]] = path
    if "libasan" not in libs:
        return {}
    preload = [libs["libasan"]] + [libs[n] for n in ("libstdc++",) if n in libs]
    return {"LD_PRELOAD": ":".join(preload), "ASAN_OPTIONS": "detect_leaks=0"}


def _alive(pid):
    """Running and not a zombie (a daemon's master is reaped by init, which may be slow in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _stop_pid(pid, timeout=15):
    """Graceful stop of a daemonised nginx master by pid (SIGQUIT), SIGKILL after the deadline."""
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGQUIT)
    try:
        mp.wait_until(lambda: not _alive(pid), timeout=timeout, what=f"nginx {pid} to exit")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        mp.wait_until(lambda: not _alive(pid), timeout=timeout, what=f"nginx {pid} to die")


def run(args, env=None, check=True):
    full_env = dict(os.environ)
    full_env.update(REGISTRY_ENV)
    if env:
        full_env.update(env)
    p = subprocess.run(args, capture_output=True, text=True, env=full_env, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p


def operator_env(**extra):
    """The environment of an operator's shell: this process's, without either registry variable (the harness sets
    the group one), plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MONITORING_PROXY_REGISTRY", "MONITORING_PROXY_REGISTRY_GROUP")}
    return {**env, **extra}


class Registry:
    """A test registry: targets through tunnelctl, live tunnels through mp-registry-fixture."""

    def __init__(self, path):
        self.path = path

    def files(self):
        """(path, owner, group, mode) of every directory and file of the registry."""
        out = []
        for dirpath, _, filenames in os.walk(self.path):
            for path in [dirpath, *(os.path.join(dirpath, n) for n in filenames)]:
                st = os.stat(path)
                out.append((path, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
        return sorted(out)

    def tunnelctl(self, *args, check=True):
        return run([mp.program("tunnelctl"), "--registry", self.path, *args], check=check)

    def add(self, name, *args):
        self.tunnelctl("add", name, *args)

    def remove(self, name):
        self.tunnelctl("rm", name)

    def live(self, name, port):
        run([mp.program("mp-registry-fixture"), "--registry", self.path, "live", name, str(port)])

    def gone(self, name):
        run([mp.program("mp-registry-fixture"), "--registry", self.path, "gone", name])

    def fixture(self, *args, check=True):
        """mp-registry-fixture on this registry (the cluster view: cluster-self, cluster-tunnel, ...)."""
        return run([mp.program("mp-registry-fixture"), "--registry", self.path, *args], check=check)


# What the shipped configurations add for cluster mode (docker/nginx, the Debian site): the hop header, and a
# connect timeout short enough that a dead peer answers at once.
CLUSTER_LOCATION_LINES = """\
            proxy_set_header Monitoring-Proxy-Hop $tunnel_hop;
            proxy_connect_timeout 1s;"""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keepalive, so connection reuse by nginx is visible

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests.append({"path": self.path, "peer": self.client_address,
                                    "headers": dict(self.headers)})
            server.connections.add(self.client_address)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if "delay" in query:
            server.release.wait(float(query["delay"][0]))
        body = f"{server.name} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Backend(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """An exporter stand-in on a free loopback port; answers `<name> <path>` and records every request and
    client connection. `?delay=S` waits up to S seconds (released at stop) to play a slow exporter."""
    daemon_threads = True
    block_on_close = False

    def __init__(self, name):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.port = self.server_address[1]
        self.lock = threading.Lock()
        self.requests = []
        self.connections = set()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=10)


class Nginx:
    """One nginx instance (master + workers) in its own prefix, started with `daemon off` and stopped by pid."""

    def __init__(self, procs, workdir, registry_path, workers=1, upstream_body=None, http_extra="",
                 server_extra="", read_timeout="10s", registry_line=None, daemon=False,
                 location_extra=CLUSTER_LOCATION_LINES):
        self.procs = procs
        self.daemon = daemon
        self.daemon_pids = []  # masters started with `daemon on` (binary upgrade needs it): stopped by pid
        self.prefix = os.path.join(workdir, "nginx")
        self.port = mp.free_port()
        self.proc = None
        for sub in ("conf", "logs", "tmp"):
            os.makedirs(os.path.join(self.prefix, sub), exist_ok=True)
        os.chmod(self.prefix, 0o755)
        if upstream_body is None:
            upstream_body = "        tunnel;\n        keepalive 16;"
        if registry_line is None:
            registry_line = f"tunnel_registry {registry_path};"
        self.conf_path = os.path.join(self.prefix, "conf", "nginx.conf")
        module = mp.program("ngx_http_tunnel_module.so")
        self.env = sanitizer_env(module)
        self.write_conf(CONF_TEMPLATE.format(
            module=module, daemon="on" if daemon else "off", workers=workers,
            # nginx passes only `env` variables on to a new binary (binary upgrade) and to workers
            env_lines="".join(f"env {name};\n" for name in self.env), prefix=self.prefix,
            registry_line=registry_line, http_extra=http_extra, upstream_body=upstream_body, port=self.port,
            read_timeout=read_timeout, server_extra=server_extra, location_extra=location_extra))

    def write_conf(self, text):
        with open(self.conf_path, "w") as f:
            f.write(text)

    def config_test(self):
        """`nginx -t` on the config: (exit status, output)."""
        p = subprocess.run([NGINX, "-p", self.prefix, "-c", "conf/nginx.conf", "-e", "stderr", "-t"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, **self.env})
        return p.returncode, p.stdout + p.stderr

    def pid_file(self, suffix=""):
        return os.path.join(self.prefix, "logs", "nginx.pid" + suffix)

    def read_pid(self, suffix=""):
        with open(self.pid_file(suffix)) as f:
            return int(f.read().strip())

    def master_pid(self):
        return self.read_pid() if self.daemon else self.proc.pid

    def start(self):
        if self.daemon:
            return self._start_daemon()
        self.proc = self.procs.start([NGINX, "-p", self.prefix, "-c", "conf/nginx.conf", "-e", "stderr"],
                                     name="nginx", env=self.env)
        mp.wait_until(lambda: self.proc.poll() is not None or mp.port_open(self.port), timeout=15,
                      what="nginx listening")
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited {self.proc.returncode}: {self.output()}")
        mp.wait_until(lambda: len(self.worker_pids()) > 0, timeout=15, what="nginx workers")
        return self

    def _start_daemon(self):
        p = subprocess.run([NGINX, "-p", self.prefix, "-c", "conf/nginx.conf", "-e", "stderr"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, **self.env})
        assert p.returncode == 0, p.stdout + p.stderr
        mp.wait_until(lambda: os.path.exists(self.pid_file()), timeout=15, what="nginx pid file")
        self.daemon_pids.append(self.read_pid())
        mp.wait_until(lambda: mp.port_open(self.port) and self.worker_pids(), timeout=15,
                      what="nginx listening with workers")
        return self

    def binary_upgrade(self):
        """USR2 (start a new master from the binary on disk, inheriting the listeners), then QUIT the old one."""
        old = self.read_pid()
        os.kill(old, signal.SIGUSR2)
        mp.wait_until(lambda: os.path.exists(self.pid_file(".oldbin")) and os.path.exists(self.pid_file())
                      and self.read_pid() != old, timeout=15, what="new nginx master")
        new = self.read_pid()
        self.daemon_pids.append(new)
        mp.wait_until(lambda: subprocess.run(["pgrep", "-P", str(new)], capture_output=True).returncode == 0,
                      timeout=15, what="workers of the new master")
        _stop_pid(old)
        return old, new

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.master_pid())], capture_output=True, text=True).stdout
        return sorted(int(x) for x in out.split())

    def reload(self):
        """SIGHUP to the master; returns once a fresh set of workers replaced the old ones."""
        old = set(self.worker_pids())
        os.kill(self.master_pid(), signal.SIGHUP)
        mp.wait_until(lambda: (set(self.worker_pids()) - old) and not (set(self.worker_pids()) & old),
                      timeout=30, what="new nginx workers after reload")

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc, sig=signal.SIGQUIT, timeout=15)
        for pid in self.daemon_pids:
            _stop_pid(pid)

    def output(self):
        return mp.Processes.log_text(self.proc) if self.proc else ""

    def error_log(self):
        path = os.path.join(self.prefix, "logs", "error.log")
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()

    def assert_clean_log(self):
        """Every module test ends with this: no [alert] or [emerg] anywhere, no sanitizer report, and no worker
        that died (a worker killed by a sanitizer exits with a code nginx only logs as a notice)."""
        text = self.error_log() + self.output()
        pattern = (r"\[(alert|emerg)\]|AddressSanitizer|LeakSanitizer|runtime error:"
                   r"|worker process \d+ exited with code [1-9]")
        bad = [line for line in text.splitlines() if re.search(pattern, line)]
        assert not bad, "alerts in nginx's log:\n" + "\n".join(bad)

    def get(self, path, headers=None, timeout=15, conn=None):
        """(status, body text, response headers); a new connection unless `conn` is given."""
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            return resp.status, body, dict(resp.getheaders())
        finally:
            if own:
                conn.close()

    def status(self, path, **kw):
        return self.get(path, **kw)[0]


def make_registry(workdir):
    """A registry directory (created by tunnelctl on first use) under a path nobody can traverse."""
    path = os.path.join(workdir, "registry")
    return Registry(path)


def wait_for_status(nginx, path, status, timeout=10):
    return mp.wait_until(lambda: nginx.status(path) == status, timeout=timeout,
                         what=f"GET {path} -> {status}")



class Env:
    """Everything one module test uses, stopped at the end; nginx's log is checked for [alert]/[emerg] after
    every test."""

    def __init__(self, workdir, procs):
        self.workdir = workdir
        self.procs = procs
        self.registry = Registry(os.path.join(workdir, "registry"))
        self.backends = []
        self.instances = []

    def backend(self, name):
        b = Backend(name)
        self.backends.append(b)
        return b

    def target(self, name, *tunnelctl_args):
        """A declared target with a live tunnel to a fresh backend."""
        self.registry.add(name, *tunnelctl_args)
        b = self.backend(name)
        self.registry.live(name, b.port)
        return b

    def nginx(self, registry=None, workdir=None, **kw):
        """nginx on this Env's registry, or on another one (`registry`, with its own `workdir` prefix)."""
        n = Nginx(self.procs, workdir or self.workdir, (registry or self.registry).path, **kw)
        self.instances.append(n)
        return n

    def close(self):
        try:
            for n in self.instances:
                n.stop()
            for n in self.instances:
                n.assert_clean_log()
        finally:
            for b in self.backends:
                b.stop()


def readers(registry_dir):
    """Pids holding reader slots in an LMDB environment (mdb_stat -r)."""
    out = subprocess.run(["mdb_stat", "-r", registry_dir], capture_output=True, text=True, timeout=30).stdout
    pids = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0].isdigit():
            pids.add(int(fields[0]))
    return pids
