"""Runs docker/entrypoint without Docker: against a temporary root (every path under $MP_ROOT), with the built
tunneld, tunnelctl and nginx module, on free loopback ports. Also an exporter stand-in and OpenSSH clients."""
import json
import os
import re
import shutil
import signal
import subprocess

import mp
from nginx_harness import sanitizer_env

ENTRYPOINT = os.path.abspath(os.path.join(mp.SOURCE_DIR, "docker", "entrypoint"))
NGINX_SHARE = os.path.abspath(os.path.join(mp.SOURCE_DIR, "docker", "nginx"))


# Where CMake puts what the entrypoint runs (mp.program's fallback to the build root would also match the
# tunneld/ directory).
BUILT = {
    "tunneld": "tunneld/src/tunneld",
    "tunnelctl": "tunneld/tunnelctl/tunnelctl",
    "ngx_http_tunnel_module.so": "ngx_module/ngx_http_tunnel_module.so",
}


def built_path(name):
    return os.path.abspath(os.path.join(mp.BUILD_DIR, BUILT[name]))


def keygen(path, kind="ed25519"):
    """A new OpenSSH key pair at path / path.pub; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", os.path.basename(path), "-f", path],
                   check=True, stdin=subprocess.DEVNULL)
    with open(path + ".pub") as f:
        return f.read().strip()


def fingerprint(path):
    """SHA256 fingerprint as `ssh-keygen -lf` prints it."""
    out = subprocess.run(["ssh-keygen", "-l", "-f", path], check=True, capture_output=True, text=True).stdout
    return out.split()[1]


class Root:
    """A temporary root laid out like the image: etc/ssh, etc/monitoring, etc/nginx/conf.d, var/lib, run."""

    def __init__(self, workdir, port_range=None):
        self.dir = os.path.join(workdir, "root")
        for sub in ("etc/ssh", "etc/monitoring", "etc/monitoring-proxy", "etc/nginx/conf.d", "var/lib"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.ssh_port = mp.free_port()
        self.http_port = mp.free_port()
        self.port_range = port_range or "20000-29999"
        self.entrypoint = ENTRYPOINT
        self.share_dir = NGINX_SHARE
        self.programs = {name: built_path(name) for name in BUILT}

    def copy_programs(self):
        """Runs copies of the entrypoint, its nginx files and the built programs from beside this root: another
        user may be unable to reach the clone and its build directory (a clone in /root, mode 0700)."""
        d = os.path.join(os.path.dirname(self.dir), "programs")
        os.makedirs(d)
        os.chmod(d, 0o755)
        self.entrypoint = shutil.copy2(ENTRYPOINT, d)
        self.share_dir = shutil.copytree(NGINX_SHARE, os.path.join(d, "share"))
        self.programs = {name: shutil.copy2(path, d) for name, path in self.programs.items()}

    def path(self, rel):
        return os.path.join(self.dir, rel)

    @property
    def registry(self):
        return self.path("var/lib/monitoring-proxy/registry")

    @property
    def run_dir(self):
        return self.path("run/monitoring-proxy")

    def write(self, rel, text, mode=0o644):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def env(self, **extra):
        env = {
            "MP_ROOT": self.dir,
            "MP_SHARE_DIR": self.share_dir,
            "MP_TUNNELCTL": self.programs["tunnelctl"],
            "MP_TUNNELD": self.programs["tunneld"],
            "MP_NGINX_MODULE": self.programs["ngx_http_tunnel_module.so"],
            "MP_SSH_LISTEN": f"127.0.0.1:{self.ssh_port}",
            "MP_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "MP_PORT_RANGE": self.port_range,
            "MP_NGINX_WORKERS": "1",
            "MP_STOP_TIMEOUT": "5",
        }
        for var in ("MONITORING_PROXY_PUBLIC_KEY", "MONITORING_PROXY_REGISTRY", "MONITORING_PROXY_REGISTRY_GROUP"):
            env[var] = ""  # never inherit the caller's
        # A sanitizer build's module needs the ASan runtime preloaded into the uninstrumented nginx.
        env.update(sanitizer_env(self.programs["ngx_http_tunnel_module.so"]))
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, *args, env=None, timeout=60):
        """Runs the entrypoint in the foreground (prepare, healthcheck, a command); returns CompletedProcess."""
        full_env = dict(os.environ)
        full_env.update(self.env(**(env or {})))
        return subprocess.run([self.entrypoint, *args], env=full_env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def start(self, procs, env=None, pre_exec=()):
        """Starts `entrypoint run` (optionally under a wrapper such as setpriv) and waits until both ports
        answer."""
        p = procs.start([*pre_exec, self.entrypoint], name="entrypoint", env=self.env(**(env or {})))
        mp.wait_until(lambda: p.poll() is not None or (mp.port_open(self.ssh_port) and
                                                      mp.port_open(self.http_port)),
                      timeout=30, what="the entrypoint's SSH and HTTP ports")
        assert p.poll() is None, "entrypoint exited:\n" + procs.log_text(p)
        return p

    def daemon_pid(self, name):
        """pid of tunneld (written by the entrypoint) or of the nginx master (nginx's pid file)."""
        path = os.path.join(self.run_dir, f"{name}.pid")
        return mp.wait_until(lambda: int(open(path).read().strip() or 0), what=f"{path}")

    def tunnelctl(self, *args):
        return subprocess.run([built_path("tunnelctl"), "--registry", self.registry, *args],
                              capture_output=True, text=True, check=True).stdout

    def live_targets(self):
        listing = json.loads(self.tunnelctl("ls", "--json"))
        rows = listing if isinstance(listing, list) else listing.get("targets", [])
        return sorted(r["name"] for r in rows if r.get("state") == "connected")

    def kill_leftovers(self):
        """Stops, by pid, daemons a failed test may have left (the entrypoint itself is stopped by procs)."""
        for name in ("tunneld", "nginx"):
            try:
                with open(os.path.join(self.run_dir, f"{name}.pid")) as f:
                    pid = int(f.read().strip())
                if mp_process_is(pid, name):
                    os.killpg(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass


def mp_process_is(pid, name):
    """True when pid is a running process whose command line mentions name (guards against pid reuse)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return name.encode() in f.read()
    except OSError:
        return False


def pid_running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def start_exporter(procs, workdir, body):
    """An HTTP server standing in for node_exporter: GET /metrics returns body. Returns its port."""
    d = os.path.join(workdir, "exporter")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "metrics"), "w") as f:
        f.write(body)
    port = mp.free_port()
    procs.start(["/usr/bin/python3", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", d],
                name="exporter")
    mp.wait_until(lambda: mp.port_open(port), what="the exporter")
    return port


def ssh_reverse(procs, root, key, spec, user="monitoring", known_hosts=None):
    """`ssh -N -R spec` into the entrypoint's tunneld, as a monitored host would run it."""
    opts = ["-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "IdentitiesOnly=yes",
            "-o", "ServerAliveInterval=5", "-o", "LogLevel=ERROR"]
    if known_hosts:
        opts += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
    else:
        opts += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    return procs.start(["ssh", "-N", "-F", "/dev/null", *opts, "-i", key, "-p", str(root.ssh_port),
                        "-R", spec, f"{user}@127.0.0.1"], name="ssh")


def http_get(port, path, timeout=5):
    """(status, body) of GET http://127.0.0.1:port/path."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def log_lines(text, pattern):
    return [line for line in text.splitlines() if re.search(pattern, line)]
