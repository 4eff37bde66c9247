"""Starts the programs both stacks are made of, on loopback with free ports inside one work directory: an exporter
(stock nginx serving fixed files), a private OpenSSH sshd, tunneld, stock nginx with one static proxy_pass location
per host (the original stack), nginx with the tunnel module, and OpenSSH `ssh -N -R` clients. Every process is
started through mp.Processes and so stopped by pid."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "e2e"))
import mp  # noqa: E402

NGINX = "/usr/sbin/nginx"
SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
REGISTRY_GROUP = "nogroup"  # nginx started as root runs its workers as nobody:nogroup

# Exporter pages: name -> size. 150 KB and 1 MB are typical node_exporter scrape sizes; 100 MB the bulk relay.
PAGES = {"m1k": 1024, "m150k": 150 * 1024, "m1m": 1024 * 1024}
BULK_PAGE, BULK_BYTES = "m100m", 100 * 1024 * 1024

CIPHERS = {"chacha20": "chacha20-poly1305@openssh.com", "aes128-gcm": "aes128-gcm@openssh.com"}


def find_program(build_dir, *relative):
    for rel in relative:
        p = os.path.join(build_dir, rel)
        if os.path.isfile(p):
            return os.path.abspath(p)
    return None


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_block(count, start, end):
    """`count` consecutive loopback ports free right now in [start, end), for numbered forwards."""
    base = start
    while base + count <= end:
        bad = next((p for p in range(base, base + count) if not port_free(p)), None)
        if bad is None:
            return base
        base = bad + 1
    raise RuntimeError(f"no block of {count} free ports in {start}-{end}")


def _run(args, env=None, timeout=60):
    full = dict(os.environ)
    if env:
        full.update(env)
    p = subprocess.run(args, capture_output=True, text=True, env=full, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p.stdout


def write_pages(root):
    """Prometheus-like text of exact sizes, plus a sparse 100 MB file (sendfile reads zero pages)."""
    os.makedirs(root, exist_ok=True)
    for name, size in PAGES.items():
        line_no, chunks, total = 0, [], 0
        while total < size:
            line = f'bench_page_metric{{series="{line_no}"}} {line_no % 997}\n'
            chunks.append(line)
            total += len(line)
            line_no += 1
        text = "".join(chunks)[:size - 1] + "\n"
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    with open(os.path.join(root, BULK_PAGE), "wb") as f:
        f.truncate(BULK_BYTES)


class Nginx:
    """One nginx (master + 1 worker) in its own prefix; routes are in an included file so the original stack's
    "edit the config, reload" can be replayed."""

    def __init__(self, procs, workdir, name, server_body, http_extra="", load_module=None):
        self.procs, self.name = procs, name
        self.prefix = os.path.join(workdir, name)
        for sub in ("conf", "logs", "tmp"):
            os.makedirs(os.path.join(self.prefix, sub), exist_ok=True)
        os.chmod(self.prefix, 0o755)
        self.port = mp.free_port()
        self.routes_path = os.path.join(self.prefix, "conf", "routes.conf")
        self.write_routes("")
        p = self.prefix
        conf = (f"{'load_module ' + load_module + ';' if load_module else ''}\n"
                f"daemon off;\nmaster_process on;\nworker_processes 1;\nworker_rlimit_nofile 20000;\n"
                f"pid {p}/logs/nginx.pid;\nerror_log {p}/logs/error.log warn;\n"
                f"events {{ worker_connections 8192; }}\n"
                f"http {{\n  access_log off;\n  client_body_temp_path {p}/tmp/cb;\n  proxy_temp_path {p}/tmp/px;\n"
                f"  fastcgi_temp_path {p}/tmp/fc;\n  uwsgi_temp_path {p}/tmp/uw;\n  scgi_temp_path {p}/tmp/sc;\n"
                f"  keepalive_requests 100000;\n{http_extra}\n"
                f"  server {{\n    listen 127.0.0.1:{self.port} backlog=4096;\n{server_body}\n"
                f"    include {self.routes_path};\n  }}\n}}\n")
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = procs.start([NGINX, "-p", self.prefix, "-c", "conf/nginx.conf", "-e", "stderr"], name=name)
        mp.wait_until(lambda: self.proc.poll() is not None or mp.port_open(self.port), timeout=20,
                      what=f"{name} listening")
        if self.proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {procs.log_text(self.proc)}")

    def write_routes(self, text):
        with open(self.routes_path, "w") as f:
            f.write(text)

    def reload(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"


def static_route(name, port):
    """The original image's block for one host."""
    return f"    location /{name}/ {{ proxy_pass http://127.0.0.1:{port}/; }}\n"


class Stack:
    def __init__(self, procs, workdir, build_dir, overrides=None):
        """overrides: explicit paths (tunneld, tunnelctl, module, fixture) instead of the build dir's."""
        self.procs, self.workdir, self.build_dir = procs, workdir, build_dir
        o = overrides or {}
        self.tunneld_bin = o.get("tunneld") or find_program(build_dir, "tunneld/src/tunneld")
        self.tunnelctl_bin = o.get("tunnelctl") or find_program(build_dir, "tunneld/tunnelctl/tunnelctl")
        self.module_so = o.get("module") or find_program(build_dir, "ngx_module/ngx_http_tunnel_module.so")
        self.fixture_bin = o.get("fixture") or find_program(build_dir, "ngx_module/mp-registry-fixture")
        self.registry = os.path.join(workdir, "registry")
        self.client_key = os.path.join(workdir, "client_key")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench-client", "-f", self.client_key])
        self.authorized_keys = os.path.join(workdir, "authorized_keys")
        with open(self.client_key + ".pub") as src, open(self.authorized_keys, "w") as dst:
            dst.write(src.read())
        os.chmod(self.authorized_keys, 0o600)
        self.ssh_clients = []

    # -- what exists -------------------------------------------------------------------------------------------
    def have_tunneld(self):
        return bool(self.tunneld_bin and self.tunnelctl_bin)

    def have_module(self):
        return bool(self.module_so and self.tunnelctl_bin)

    # -- exporter ----------------------------------------------------------------------------------------------
    def start_exporter(self):
        root = os.path.join(self.workdir, "pages")
        write_pages(root)
        os.chmod(self.workdir, 0o755)
        self.exporter = Nginx(self.procs, self.workdir, "exporter",
                              f"    location / {{ root {root}; sendfile on; tcp_nopush on; }}")
        return self.exporter

    def start_node_exporter(self):
        """A real prometheus-node-exporter on a free loopback port (what most tunnels carry), or None when the
        package is not installed."""
        if not os.access(NODE_EXPORTER, os.X_OK):
            return None
        port = mp.free_port()
        proc = self.procs.start([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"], name="node-exporter")
        mp.wait_until(lambda: proc.poll() is not None or mp.port_open(port), timeout=20,
                      what="node exporter listening")
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus-node-exporter exited: {self.procs.log_text(proc)}")
        return port

    # -- sshd ----------------------------------------------------------------------------------------------------
    def start_sshd(self, max_startups="10000"):
        """A private sshd as the original image runs it (reverse forwards only, no shell). MaxStartups is raised
        so that a connection storm measures sshd's speed, not its random early drop of unauthenticated
        connections (the default 10:30:100 would refuse most of 1,000 clients connecting at once)."""
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory sshd requires
        d = os.path.join(self.workdir, "sshd")
        os.makedirs(d, exist_ok=True)
        host_key = os.path.join(d, "ssh_host_ed25519_key")
        if not os.path.exists(host_key):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key])
        config = os.path.join(d, "sshd_config")
        with open(config, "w") as f:
            f.write(f"HostKey {host_key}\nListenAddress 127.0.0.1\nAuthorizedKeysFile {self.authorized_keys}\n"
                    "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                    "UsePAM no\nAllowTcpForwarding remote\nGatewayPorts no\nPermitTTY no\nX11Forwarding no\n"
                    "AllowAgentForwarding no\nForceCommand /bin/false\nStrictModes no\nPidFile none\n"
                    f"MaxStartups {max_startups}\nMaxSessions 10\nLogLevel ERROR\n")
        self.sshd_port = mp.free_port()
        self.sshd = self.procs.start([SSHD, "-D", "-e", "-f", config, "-p", str(self.sshd_port)], name="sshd")
        mp.wait_until(lambda: self.sshd.poll() is not None or mp.port_open(self.sshd_port), timeout=20,
                      what="sshd listening")
        if self.sshd.poll() is not None:
            raise RuntimeError(f"sshd exited: {self.procs.log_text(self.sshd)}")
        return self.sshd_port

    # -- tunneld and the registry --------------------------------------------------------------------------------
    def tunnelctl(self, *args):
        return _run([self.tunnelctl_bin, "--registry", self.registry, "--registry-group", REGISTRY_GROUP, *args],
                    env={"MONITORING_PROXY_REGISTRY_GROUP": REGISTRY_GROUP})

    def declare(self, name):
        self.tunnelctl("add", name)

    def import_targets(self, names_ports):
        """Declares every target at once through the original image's targets file (fixed ports), as a site
        migrating from it would. One key serves them all, so none may be self-registered: a key that
        self-registers a name becomes bound to that name only."""
        path = os.path.join(self.workdir, "targets")
        with open(path, "w") as f:
            f.writelines(f"localhost:{port} {name}\n" for name, port in names_ports)
        self.tunnelctl("import-targets", path)

    def tunnel_port(self, name):
        """The loopback port of NAME's live tunnel, or None."""
        try:
            info = json.loads(self.tunnelctl("show", name, "--json"))
        except (RuntimeError, ValueError):
            return None
        return info.get("port")

    def fixture_live(self, name, port):
        _run([self.fixture_bin, "--registry", self.registry, "live", name, str(port)],
             env={"MONITORING_PROXY_REGISTRY_GROUP": REGISTRY_GROUP})

    def start_tunneld(self, port_range):
        d = os.path.join(self.workdir, "tunneld-keys")
        os.makedirs(d, exist_ok=True)
        self.tunnelctl("init")  # creates the registry with the group nginx workers need
        self.tunneld_port = mp.free_port()
        self.tunneld = self.procs.start(
            [self.tunneld_bin, "--listen", f"127.0.0.1:{self.tunneld_port}", "--registry", self.registry,
             "--host-key-dir", d, "--authorized-keys", self.authorized_keys, "--port-range", port_range,
             # every load-client session comes from 127.0.0.1: a plain cap of 256, as before per-address limits
             "--per-source-max-startups", "256", "--max-startups", "256:30:256"],
            name="tunneld", env={"MONITORING_PROXY_REGISTRY_GROUP": REGISTRY_GROUP})
        mp.wait_until(lambda: self.tunneld.poll() is not None or mp.port_open(self.tunneld_port), timeout=20,
                      what="tunneld listening")
        if self.tunneld.poll() is not None:
            raise RuntimeError(f"tunneld exited: {self.procs.log_text(self.tunneld)}")
        return self.tunneld_port

    # -- nginx, both kinds -----------------------------------------------------------------------------------------
    def start_original_nginx(self):
        """Stock nginx, one static location per host, proxy settings as the original image (HTTP/1.0 to the
        tunnel, a new connection per request)."""
        self.original = Nginx(self.procs, self.workdir, "nginx-original", "")
        return self.original

    def start_static_keepalive_nginx(self, backend_port):
        """Stock nginx with a static upstream and the same proxy settings as the module config: row 2's
        baseline, so only the routing differs."""
        upstream = (f"  upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 16; }}\n")
        body = ("    location /direct/ { proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
                "                       proxy_pass http://backend/; }")
        self.static_keepalive = Nginx(self.procs, self.workdir, "nginx-static", body, http_extra=upstream)
        return self.static_keepalive

    def start_module_nginx(self):
        upstream = (f"  tunnel_registry {self.registry};\n"
                    "  upstream tunnels { tunnel; keepalive 16; }\n")
        body = ("    location / { proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
                "                 proxy_pass http://tunnels$tunnel_uri$is_args$args; }")
        self.module_nginx = Nginx(self.procs, self.workdir, "nginx-module", body, http_extra=upstream,
                                  load_module=self.module_so)
        return self.module_nginx

    def start_module_nginx_fresh(self):
        """nginx with the module and no upstream keepalive (HTTP/1.0 to the tunnel, as the original image proxies):
        every request opens a new connection to the tunnel port, so a new forwarded-tcpip channel."""
        upstream = (f"  tunnel_registry {self.registry};\n"
                    "  upstream tunnels { tunnel; }\n")
        body = "    location / { proxy_pass http://tunnels$tunnel_uri$is_args$args; }"
        self.module_nginx_fresh = Nginx(self.procs, self.workdir, "nginx-module-fresh", body, http_extra=upstream,
                                        load_module=self.module_so)
        return self.module_nginx_fresh

    # -- OpenSSH clients -------------------------------------------------------------------------------------------
    def ssh_forward(self, server_port, remote_spec, cipher):
        """`ssh -N -R remote_spec` with one cipher; the same client binary and options for both servers."""
        p = self.procs.start(
            [SSH, "-N", "-T", "-F", "/dev/null", "-i", self.client_key, "-p", str(server_port),
             "-c", cipher, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
             "-R", remote_spec, "root@127.0.0.1"], name="ssh")
        self.ssh_clients.append(p)
        return p
