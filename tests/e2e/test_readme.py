"""The README's commands are run here, so the README cannot rot."""
import json
import os
import re
import subprocess
import urllib.request

import mp
from nginx_harness import sanitizer_env

README = os.path.join(mp.SOURCE_DIR, "README.md")


def shell_blocks():
    text = open(README).read()
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def quick_start_commands():
    section = open(README).read().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_ci_runs_the_readme_test_command():
    demo, tests = quick_start_commands()[:2]
    ci = [line for line in open(os.path.join(mp.SOURCE_DIR, ".ci", "run")).read().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci[-1] == tests
    assert "ctest" in tests and "install-deps.sh test" in tests


def nginx_for_the_module(workdir):
    """/usr/sbin/nginx, or for a sanitizer build a wrapper preloading the ASan runtime into nginx alone (preloading
    it into every program the demo starts, node_exporter among them, is not what is under test)."""
    preload = sanitizer_env(mp.program("ngx_http_tunnel_module.so"))
    if not preload:
        return "/usr/sbin/nginx"
    wrapper = os.path.join(workdir, "nginx-sanitized")
    exports = "".join(f"export {k}='{v}'\n" for k, v in preload.items())
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\n{exports}exec /usr/sbin/nginx \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return wrapper


def test_demo_command_starts_a_scrapeable_stack(workdir):
    demo = quick_start_commands()[0]
    # The install and build steps are the test command's (this suite runs after them); run the demo itself on
    # free ports so it cannot clash with anything else on the machine.
    steps = [s.strip() for s in demo.split("&&")]
    assert steps[0] == "./docker/install-deps.sh test" and steps[-1] == "docker/demo"
    http = mp.free_port()
    env = {**os.environ, "MP_NGINX": nginx_for_the_module(workdir),
           "MP_BUILD_DIR": mp.BUILD_DIR, "MP_DEMO_DIR": os.path.join(workdir, "demo"),
           "MP_DEMO_SSH_PORT": str(mp.free_port()), "MP_DEMO_HTTP_PORT": str(http),
           "MP_DEMO_EXPORTER_PORT": str(mp.free_port())}
    try:
        out = subprocess.run([os.path.join(mp.SOURCE_DIR, "docker", "demo")], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"curl -s http://127.0.0.1:{http}/demo-host/metrics" in out.stdout
        body = urllib.request.urlopen(f"http://127.0.0.1:{http}/demo-host/metrics", timeout=10).read().decode()
        assert "node_" in body or "demo_up 1" in body
        sd = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http}/-/sd", timeout=10).read())
        assert [group["labels"]["tunnel"] for group in sd] == ["demo-host"]
    finally:
        stop = subprocess.run([os.path.join(mp.SOURCE_DIR, "docker", "demo"), "stop"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert not mp.port_open(http)


def fenced(lang, containing=""):
    text = open(README).read()
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, re.S)
    return [b for b in blocks if containing in b]


def test_prometheus_configs_pass_promtool(workdir):
    blocks = fenced("yaml", "http_sd_configs")
    assert len(blocks) == 2  # a single proxy's, and the cluster's HA pair
    for block in blocks:
        path = os.path.join(workdir, "prometheus.yml")
        open(path, "w").write(block)
        check = subprocess.run(["promtool", "check", "config", path], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_nginx_config_passes_nginx_t(workdir):
    (block,) = fenced("nginx", "tunnel_registry")
    registry = os.path.join(workdir, "registry")
    subprocess.run([mp.program("tunnelctl"), "--registry", registry, "--registry-group", "nogroup", "init"],
                   check=True, capture_output=True)
    conf = (block.replace("modules/ngx_http_tunnel_module.so", mp.program("ngx_http_tunnel_module.so"))
            .replace("/var/lib/monitoring-proxy/registry", registry)
            .replace("listen 80;", f"listen 127.0.0.1:{mp.free_port()};"))
    os.makedirs(os.path.join(workdir, "nginx", "logs"))
    path = os.path.join(workdir, "nginx", "nginx.conf")
    open(path, "w").write(f"pid {workdir}/nginx/nginx.pid;\nerror_log stderr;\n" + conf)
    check = subprocess.run(["/usr/sbin/nginx", "-p", os.path.join(workdir, "nginx"), "-c", path, "-e", "stderr", "-t"],
                           capture_output=True, text=True,
                           env={**os.environ, **sanitizer_env(mp.program("ngx_http_tunnel_module.so"))})
    assert check.returncode == 0, check.stdout + check.stderr


def test_host_side_commands_are_valid(workdir):
    ssh_lines = [b for b in fenced("sh", "ssh -N")]
    assert ssh_lines
    for block in ssh_lines:
        args = block.replace("\\\n", " ").split()
        assert args[:2] == ["ssh", "-N"]
        # ssh -G parses every option and prints the resulting configuration without connecting anywhere.
        check = subprocess.run(["ssh", "-G", *args[1:]], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    (unit,) = fenced("ini", "autossh")
    (cluster_unit,) = fenced("ini", "/usr/local/bin/monitoring-proxy-tunnel ")
    script = os.path.join(mp.SOURCE_DIR, "docker", "host", "monitoring-proxy-tunnel")
    for text in (unit, cluster_unit.replace("/usr/local/bin/monitoring-proxy-tunnel", script)):
        path = os.path.join(workdir, "monitoring-proxy-tunnel.service")
        open(path, "w").write(text.split("\n", 1)[1])  # drop the "# /etc/systemd/..." comment line
        check = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_cluster_flags_are_the_programs_flags():
    """Every flag "Running a cluster" names for tunneld and tunnelctl is one their --help documents, and the
    cluster flags of --help are all in the section's table."""
    section = open(README).read().split("\n## Running a cluster\n", 1)[1].split("\n## ", 1)[0]
    helps = {name: subprocess.run([mp.program(name), "--help"], capture_output=True, text=True).stdout
             for name in ("tunneld", "tunnelctl")}
    for line in re.findall(r"^\s*(tunneld|tunnelctl) (.*)$", section.replace("\\\n", " "), re.M):
        unknown = mp.long_flags(line[1]) - mp.long_flags(helps[line[0]])
        assert not unknown, f"{line[0]} has no {unknown}"
    table = {f for cell in re.findall(r"^\|([^|]*)\|", section, re.M) for f in re.findall(r"`(--[a-z-]+)", cell)}
    cluster_flags = {f for f in mp.long_flags(helps["tunneld"]) if "etcd" in f} | {
        "--node-id", "--advertise-http", "--lease-ttl"}
    assert cluster_flags <= table, f"not in the section's table: {cluster_flags - table}"
    assert mp.long_flags(helps["tunnelctl"]) >= {"--etcd"}


def test_cluster_etcd_config_is_the_shipped_one():
    """The section points at the shipped etcd configuration, which has auto-compaction on."""
    section = open(README).read().split("\n## Running a cluster\n", 1)[1].split("\n## ", 1)[0]
    assert "docker/etcd/etcd.conf.yml" in section and "docker/host/monitoring-proxy-tunnel" in section
    conf = open(os.path.join(mp.SOURCE_DIR, "docker", "etcd", "etcd.conf.yml")).read()
    assert re.search(r"^auto-compaction-mode: periodic$", conf, re.M)
    assert re.search(r'^auto-compaction-retention: "1h"$', conf, re.M)
