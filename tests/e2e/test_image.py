"""The image built with podman from docker/Dockerfile (on base images made by docker/make-base-images) and driven
as the original image's users drive it: the shared key, a mounted targets file in the old format, real OpenSSH
`ssh -N -R` from outside the container through a published loopback port, scrapes through its port 80, the health
check, `stop`, re-creation on the same volumes, and the README's reduced-privilege recipes."""
import json
import os
import re
import time
import types

import pytest

import mp
from entrypoint_harness import fingerprint, keygen, ssh_reverse, start_exporter
from image_harness import IMAGE, Engine, Podman, ensure_image
from ssh_harness import fetch

# A node_exporter-sized answer (~200 KB): the scrape must come back byte for byte.
METRICS = "".join(f'node_cpu_seconds_total{{cpu="{i % 64}",mode="m{i}"}} {i * 7.25}\n' for i in range(4000))
# README "With Docker": the image's measured size, and the bound this test holds it to.
MAX_IMAGE_BYTES = 140 * 1000 * 1000  # 128.2 MB measured with the etcd client's gRPC libraries (102 MB before)
STOP_SECONDS = 8  # MP_STOP_TIMEOUT's default, below the engines' 10 s grace period
NOBODY = 65534
# The README's recipes, the same for Docker and podman.
REDUCED_CAPABILITIES = ["--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "SETUID", "--cap-add", "SETGID",
                        "--sysctl", "net.ipv4.ip_unprivileged_port_start=0"]
UNPRIVILEGED = ["--user", f"{NOBODY}:{NOBODY}", "--cap-drop", "ALL",
                "--sysctl", "net.ipv4.ip_unprivileged_port_start=0"]


@pytest.fixture(scope="module")
def podman():
    p = Podman()
    timings = ensure_image(p)
    print(f"base images {timings['base']:.0f}s, image build "
          + (f"{timings['build']:.0f}s" if timings["build"] is not None else "skipped (inputs unchanged)"))
    return p


@pytest.fixture
def engine(podman):
    e = Engine(podman, IMAGE)
    yield e
    e.close()


class Proxy:
    """One container of the image with its SSH and HTTP ports published on free loopback ports."""

    def __init__(self, engine, *options):
        self.engine = engine
        self.ssh_port, self.http_port = mp.free_port(), mp.free_port()
        self.cid = engine.run("-p", f"127.0.0.1:{self.ssh_port}:22", "-p", f"127.0.0.1:{self.http_port}:80",
                              *options)

    def wait_ready(self):
        mp.wait_until(lambda: self.exited() or ("monitoring-proxy: started tunneld" in self.logs()
                                                 and fetch(self.http_port, "/-/status", timeout=2)),
                      timeout=60, interval=0.2, what="the container's tunneld and nginx")
        assert not self.exited(), "the container exited:\n" + self.logs()
        return self

    def exited(self):
        return self.engine.state(self.cid, "Status") in ("exited", "stopped")

    def logs(self):
        return self.engine.logs(self.cid)

    def host_key_line(self):
        keys = re.findall(r"host key \S+: (ssh-ed25519 \S+)", self.logs())
        assert keys, self.logs()
        return keys[-1]

    def exec(self, *command):
        return self.engine.podman("exec", self.cid, *command).stdout

    def status_of(self, pid_file):
        """/proc/PID/status fields of the daemon whose pid the file in the run directory holds."""
        status = self.exec("sh", "-c", f'cat /proc/$(cat {pid_file})/status')
        return dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)

    def scrape(self, name, body, timeout=20):
        mp.wait_until(lambda: fetch(self.http_port, f"/{name}/metrics", timeout=5) == body.encode(),
                      timeout=timeout, interval=0.1, what=f"/{name}/metrics through the container")


def shared_key(workdir):
    key = os.path.join(workdir, "monitoring_key")
    keygen(key)
    return key


def test_the_original_setup_serves_hosts_and_survives_re_creation(podman, engine, procs, workdir):
    key = shared_key(workdir)
    targets = os.path.join(workdir, "targets")
    with open(targets, "w") as f:
        f.write("localhost:20001 external-host-1\nlocalhost:20002 external-host-2\n")
    volumes = ["-v", f"{engine.volume()}:/etc/ssh", "-v", f"{engine.volume()}:/var/lib/monitoring-proxy"]
    env = ["-e", f"MONITORING_PROXY_PUBLIC_KEY={open(key + '.pub').read().strip()}"]
    proxy = Proxy(engine, *env, *volumes, "-v", f"{targets}:/etc/monitoring/targets:ro").wait_ready()

    # Strict host key checking: the tunnel comes up only if the container presents the key it logged.
    host_key = proxy.host_key_line()
    known_hosts = os.path.join(workdir, "known_hosts")
    with open(known_hosts, "w") as f:
        f.write(f"[127.0.0.1]:{proxy.ssh_port} {host_key}\n")
    exporter = start_exporter(procs, workdir, METRICS)
    ssh_reverse(procs, proxy, key, f"20001:localhost:{exporter}", known_hosts=known_hosts)
    proxy.scrape("external-host-1", METRICS)
    # The named form: the bind address names the declared target.
    ssh_reverse(procs, proxy, key, f"external-host-2:80:localhost:{exporter}", known_hosts=known_hosts)
    proxy.scrape("external-host-2", METRICS)

    sd = json.loads(fetch(proxy.http_port, "/-/sd"))
    assert sorted(t["labels"]["__metrics_path__"] for t in sd) == [
        "/external-host-1/metrics", "/external-host-2/metrics"], sd
    assert b"external-host-1" in fetch(proxy.http_port, "/-/status")

    # The image's HEALTHCHECK, run by the engine (podman keeps it only in the docker format: --format docker).
    health = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE).stdout)
    assert health["Test"] == ["CMD", "/usr/local/bin/monitoring-proxy-entrypoint", "healthcheck"]
    checked = podman("healthcheck", "run", proxy.cid, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    started = time.monotonic()
    podman("stop", "--time", "30", proxy.cid)  # SIGTERM (STOPSIGNAL); SIGKILL only after 30 s
    assert time.monotonic() - started < STOP_SECONDS
    assert engine.state(proxy.cid, "ExitCode") == "0"
    logs = proxy.logs()
    assert "SIGTERM: stopping tunneld and nginx" in logs and "monitoring-proxy: stopped" in logs
    assert "SIGKILL" not in logs

    # A new container on the same volumes, without the targets file: same host key, same declared targets.
    again = Proxy(engine, *env, *volumes).wait_ready()
    assert again.host_key_line() == host_key
    assert fingerprint(known_hosts) in again.logs()
    listing = again.exec("tunnelctl", "ls")
    assert "external-host-1" in listing and "external-host-2" in listing
    with open(known_hosts, "w") as f:
        f.write(f"[127.0.0.1]:{again.ssh_port} {host_key}\n")
    ssh_reverse(procs, again, key, f"20001:localhost:{exporter}", known_hosts=known_hosts)
    again.scrape("external-host-1", METRICS)


def serve_one_host(proxy, procs, workdir, key):
    exporter = start_exporter(procs, workdir, METRICS)
    ssh_reverse(procs, proxy, key, f"web1:80:127.0.0.1:{exporter}")
    proxy.scrape("web1", METRICS)


def test_reduced_capabilities_recipe(engine, procs, workdir):
    key = shared_key(workdir)
    env = ["-e", f"MONITORING_PROXY_PUBLIC_KEY={open(key + '.pub').read().strip()}", "-e", "MP_ALLOW_UNDECLARED=yes"]
    proxy = Proxy(engine, *env, *REDUCED_CAPABILITIES).wait_ready()
    serve_one_host(proxy, procs, workdir, key)
    tunneld = proxy.status_of("/run/monitoring-proxy/tunneld.pid")
    assert tunneld["Uid"].split()[0] == "0"
    assert int(tunneld["CapEff"], 16) == (1 << 0) | (1 << 6) | (1 << 7)  # CAP_CHOWN, CAP_SETGID, CAP_SETUID

    # Without the sysctl (podman's default keeps ports below 1024 privileged), a clear refusal at start.
    refused = Proxy(engine, *env, *REDUCED_CAPABILITIES[:-2])
    assert engine.wait_exit(refused.cid) == 1
    assert "MP_SSH_LISTEN=0.0.0.0:22: port 22 is below net.ipv4.ip_unprivileged_port_start=1024" in refused.logs()
    assert "--sysctl net.ipv4.ip_unprivileged_port_start=0" in refused.logs()


def chowned_volume(engine, path):
    """A named volume that NOBODY owns: chowned once by a root container of the image (the README's recipe)."""
    name = engine.volume()
    cid = engine.run("--user", "0", "-v", f"{name}:{path}", command=["chown", "-R", f"{NOBODY}:{NOBODY}", path])
    assert engine.wait_exit(cid) == 0, engine.logs(cid)
    return f"{name}:{path}"


@pytest.mark.parametrize("recipe", ["any engine: MP_RUN_DIR in /tmp, volumes chowned once, read-only root",
                                    "podman: tmpfs and host directories given to the user with :U"])
def test_unprivileged_user_recipes(engine, procs, workdir, recipe):
    key = shared_key(workdir)
    env = ["-e", f"MONITORING_PROXY_PUBLIC_KEY={open(key + '.pub').read().strip()}", "-e", "MP_ALLOW_UNDECLARED=yes"]
    if recipe.startswith("any engine"):
        run_dir = "/tmp/monitoring-proxy"
        options = ["-e", f"MP_RUN_DIR={run_dir}", "--read-only", "--tmpfs", "/tmp",
                   "-v", chowned_volume(engine, "/etc/ssh"), "-v", chowned_volume(engine, "/var/lib/monitoring-proxy")]
    else:
        run_dir = "/run/monitoring-proxy"
        # Host directories: podman 4.3 applies :U to a new named volume before filling it from the image, which
        # leaves it root's on the first start.
        host_dirs = [os.path.join(workdir, d) for d in ("ssh", "state")]
        for d in host_dirs:
            os.mkdir(d)
        options = ["--tmpfs", f"{run_dir}:U", "-v", f"{host_dirs[0]}:/etc/ssh:U",
                   "-v", f"{host_dirs[1]}:/var/lib/monitoring-proxy:U"]
    proxy = Proxy(engine, *env, *UNPRIVILEGED, *options).wait_ready()
    serve_one_host(proxy, procs, workdir, key)
    for pid_file in (f"{run_dir}/tunneld.pid", f"{run_dir}/nginx.pid"):
        status = proxy.status_of(pid_file)
        assert status["Uid"].split()[0] == str(NOBODY) and int(status["CapEff"], 16) == 0


def test_an_unprivileged_user_without_writable_directories_is_told_which_and_how(engine):
    # podman's --tmpfs copies the image's root-owned /run/monitoring-proxy into the tmpfs: not this user's.
    no_run_dir = Proxy(engine, *UNPRIVILEGED, "--tmpfs", "/run")
    assert engine.wait_exit(no_run_dir.cid) == 1
    logs = no_run_dir.logs()
    assert f"MP_RUN_DIR: /run/monitoring-proxy is not writable by uid {NOBODY}" in logs, logs
    assert "-e MP_RUN_DIR=/tmp/monitoring-proxy" in logs and "--tmpfs /run/monitoring-proxy:U" in logs
    assert "chmod" not in logs

    root_owned_volume = Proxy(engine, *UNPRIVILEGED, "-e", "MP_RUN_DIR=/tmp/monitoring-proxy",
                              "-v", f"{engine.volume()}:/var/lib/monitoring-proxy")
    assert engine.wait_exit(root_owned_volume.cid) == 1
    logs = root_owned_volume.logs()
    assert f"MONITORING_PROXY_REGISTRY: /var/lib/monitoring-proxy is not writable by uid {NOBODY}" in logs, logs
    assert f"chown -R {NOBODY}:{NOBODY}" in logs


def test_the_runtime_image_is_small_and_holds_no_build_tools_docs_or_apt_caches(podman, engine):
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    assert size < MAX_IMAGE_BYTES, f"{size / 1e6:.1f} MB"
    cid = engine.run(command=["bash", "-c", """
        for tool in g++ cc cmake make; do command -v $tool && echo "compiler: $tool"; done
        ls /var/lib/apt/lists | grep -v -x -e lock -e partial
        find /var/cache/apt -name '*.deb' -o -name '*.bin'
        find /usr/share/doc -type f ! -name copyright | head -3
        find /usr/share/man /usr/share/info -type f ! -path /usr/share/info/dir | head -3
        exit 0"""])
    assert engine.wait_exit(cid) == 0
    leftovers = engine.logs(cid).strip()
    assert leftovers == "", leftovers


def test_the_readme_gives_the_recipes_tested_here():
    readme = " ".join(open(os.path.join(mp.SOURCE_DIR, "README.md")).read().split())
    for recipe in (REDUCED_CAPABILITIES, UNPRIVILEGED, ["-e", "MP_RUN_DIR=/tmp/monitoring-proxy"],
                   ["--tmpfs", "/run/monitoring-proxy:U"], ["podman", "build", "--format", "docker"]):
        assert " ".join(recipe) in readme, recipe
    assert f"above {MAX_IMAGE_BYTES // 1000 // 1000} MB" in readme
