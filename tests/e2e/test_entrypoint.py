"""docker/entrypoint against a temporary root, with the real tunneld, tunnelctl, nginx + module and OpenSSH: the
original image's contract (shared key, targets file, host keys, hand-written locations) and the supervision of
tunneld and nginx."""
import json
import os
import re
import signal
import subprocess

import pytest

import mp
from entrypoint_harness import (ENTRYPOINT, NGINX_SHARE, Root, built_path, fingerprint, http_get, keygen,
                                log_lines, pid_running, ssh_reverse, start_exporter)

METRICS = "node_load1 0.25\n"


@pytest.fixture
def root(workdir):
    r = Root(workdir)
    yield r
    r.kill_leftovers()


def exit_within(p, seconds):
    """Exit status of p, which must end within seconds."""
    try:
        return p.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"pid {p.pid} still runs after {seconds}s:\n" + mp.Processes.log_text(p))


def serve_one_target(procs, workdir, root, key, name="web1", known_hosts=None, pre_exec=(), before_start=None):
    """Declares `name` on a fixed port through the targets file, starts the stack and an exporter, opens the
    tunnel with `ssh -R PORT:...` like a host of the original image, and waits until /name/metrics answers."""
    port = mp.free_port()
    root.port_range = f"{port}-{port}"
    root.write("etc/monitoring/targets", f"# original image format\nlocalhost:{port} {name}\n")
    if before_start:
        before_start()
    entry = root.start(procs, env={"MONITORING_PROXY_PUBLIC_KEY": open(key + ".pub").read()}, pre_exec=pre_exec)
    exporter = start_exporter(procs, workdir, METRICS)
    client = ssh_reverse(procs, root, key, f"{port}:127.0.0.1:{exporter}", known_hosts=known_hosts)
    mp.wait_until(lambda: http_get(root.http_port, f"/{name}/metrics") == (200, METRICS),
                  timeout=15, what=f"/{name}/metrics through the tunnel")
    return entry, client


def test_shared_key_and_targets_file_serve_a_host(procs, workdir, root):
    key = os.path.join(workdir, "host_key")
    keygen(key)
    entry, client = serve_one_target(procs, workdir, root, key)
    assert root.live_targets() == ["web1"]
    log = procs.log_text(entry)
    assert log_lines(log, r"authorized keys: MONITORING_PROXY_PUBLIC_KEY .*" + re.escape(fingerprint(key + ".pub")))
    assert log_lines(log, r"imported .*/etc/monitoring/targets")


def test_the_logged_host_key_is_the_one_clients_see(procs, workdir, root):
    key = os.path.join(workdir, "host_key")
    keygen(key)
    assert not os.listdir(root.path("etc/ssh"))  # the entrypoint generates the host key
    prepared = root.run("prepare")
    assert prepared.returncode == 0, prepared.stderr
    public = [line.split(": ", 2)[2] for line in log_lines(prepared.stderr, r"host key .*: ssh-ed25519 ")]
    assert len(public) == 1
    known_hosts = root.write("known_hosts", f"[127.0.0.1]:{root.ssh_port} {public[0]}\n")
    # StrictHostKeyChecking=yes: the tunnel only comes up when tunneld presents exactly the logged key.
    serve_one_target(procs, workdir, root, key, known_hosts=known_hosts)


def test_a_key_not_given_to_the_container_is_refused(procs, workdir, root):
    shared, stranger = os.path.join(workdir, "shared"), os.path.join(workdir, "stranger")
    keygen(shared)
    keygen(stranger)
    port = mp.free_port()
    root.port_range = f"{port}-{port}"
    root.write("etc/monitoring/targets", f"localhost:{port} web1\n")
    root.start(procs, env={"MONITORING_PROXY_PUBLIC_KEY": open(shared + ".pub").read()})
    client = ssh_reverse(procs, root, stranger, f"{port}:127.0.0.1:9")
    assert exit_within(client, 15) == 255
    assert "Permission denied" in procs.log_text(client)
    assert root.live_targets() == []


def test_host_key_generated_once_then_kept_and_logged_every_start(root):
    first = root.run("prepare")
    assert first.returncode == 0, first.stderr
    keys = sorted(f for f in os.listdir(root.path("etc/ssh")) if f.startswith("ssh_host_"))
    assert keys == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    assert os.stat(root.path("etc/ssh/ssh_host_ed25519_key")).st_mode & 0o777 == 0o600
    fp = fingerprint(root.path("etc/ssh/ssh_host_ed25519_key.pub"))
    assert log_lines(first.stderr, r"generated .*ssh_host_ed25519_key")
    assert log_lines(first.stderr, "host key .*ssh_host_ed25519_key: 256 " + re.escape(fp))

    second = root.run("prepare")
    assert second.returncode == 0, second.stderr
    assert not log_lines(second.stderr, "generated")
    assert log_lines(second.stderr, "host key .*ssh_host_ed25519_key: 256 " + re.escape(fp))
    assert sorted(f for f in os.listdir(root.path("etc/ssh")) if f.startswith("ssh_host_")) == keys


def test_an_existing_host_key_of_another_type_is_used_and_no_key_added(root):
    existing = root.path("etc/ssh/ssh_host_ecdsa_key")
    keygen(existing, "ecdsa")
    os.remove(existing + ".pub")  # operators sometimes mount only the private key
    result = root.run("prepare")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(root.path("etc/ssh"))) == ["ssh_host_ecdsa_key"]
    derived = subprocess.run(["ssh-keygen", "-l", "-f", existing], capture_output=True, text=True).stdout.split()[1]
    assert log_lines(result.stderr, "host key .*ssh_host_ecdsa_key: .*" + re.escape(derived))
    assert not log_lines(result.stderr, "generated")


def test_targets_file_is_imported_at_every_start(root):
    root.write("etc/monitoring/targets", "localhost:20001 external-host-1\nlocalhost:20002 external-host-2\n")
    assert root.run("prepare").returncode == 0
    shown = root.tunnelctl("show", "external-host-2")
    assert "20002" in shown
    root.write("etc/monitoring/targets", "localhost:20001 external-host-1\n")
    result = root.run("prepare")
    assert result.returncode == 0, result.stderr
    assert "external-host-1" in root.tunnelctl("ls")
    assert "external-host-2" not in root.tunnelctl("ls")


def test_a_bad_targets_file_stops_the_start_naming_the_line(root):
    root.write("etc/monitoring/targets", "localhost:20001 web1\nthis is not a target line\n")
    result = root.run("prepare")
    assert result.returncode == 1
    assert "targets:2" in result.stderr
    assert "nothing was started" in result.stderr


def test_a_public_key_that_is_not_one_is_refused_clearly(root):
    result = root.run("prepare", env={"MONITORING_PROXY_PUBLIC_KEY": "ssh-ed25519 not-base64"})
    assert result.returncode == 1
    assert "MONITORING_PROXY_PUBLIC_KEY is not an OpenSSH public key" in result.stderr
    two = root.run("prepare", env={"MONITORING_PROXY_PUBLIC_KEY": "ssh-ed25519 AAAA a\nssh-ed25519 AAAA b"})
    assert two.returncode == 1 and "several lines" in two.stderr


def test_authorized_keys_file_and_shared_key_are_both_accepted(root, workdir):
    a, b = os.path.join(workdir, "a"), os.path.join(workdir, "b")
    keygen(a)
    keygen(b)
    root.write("etc/monitoring-proxy/authorized_keys", open(a + ".pub").read(), mode=0o444)
    for _ in range(2):  # the shared key is never appended twice, the read-only file never touched
        result = root.run("prepare", env={"MONITORING_PROXY_PUBLIC_KEY": open(b + ".pub").read()})
        assert result.returncode == 0, result.stderr
    combined = open(os.path.join(root.run_dir, "authorized_keys")).read()
    assert [line for line in combined.splitlines() if line.strip()] == [
        open(a + ".pub").read().strip(), open(b + ".pub").read().strip()]
    assert os.stat(os.path.join(root.run_dir, "authorized_keys")).st_mode & 0o777 == 0o600


def test_hand_written_locations_work_beside_the_module_routing(procs, workdir, root):
    exporter = start_exporter(procs, workdir, METRICS)
    root.write("etc/nginx/conf.d/monitoring-proxy.conf", f"""
location /external-host-1/ {{
    proxy_pass http://127.0.0.1:{exporter}/;
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
}}
location = /hand-written {{ return 200 "hand-written\\n"; }}
""")
    entry = root.start(procs)
    assert http_get(root.http_port, "/external-host-1/metrics") == (200, METRICS)
    assert http_get(root.http_port, "/hand-written") == (200, "hand-written\n")
    status, body = http_get(root.http_port, "/no-such-host/metrics")
    assert status == 404 and "unknown target" in body  # the module, not nginx's default 404
    assert log_lines(procs.log_text(entry), "including your locations from .*monitoring-proxy.conf")


def test_without_hand_written_locations_only_the_module_routes(procs, root):
    root.start(procs)
    status, body = http_get(root.http_port, "/web1/metrics")
    assert status == 404 and 'unknown target "web1"' in body


def test_tunneld_dying_stops_nginx_and_exits_non_zero(procs, root):
    entry = root.start(procs)
    tunneld, nginx = root.daemon_pid("tunneld"), root.daemon_pid("nginx")
    os.kill(tunneld, signal.SIGKILL)
    assert exit_within(entry, 10) == 1
    log = procs.log_text(entry)
    assert log_lines(log, rf"tunneld \(pid {tunneld}\) was killed by signal KILL; stopping nginx")
    assert not pid_running(nginx)
    assert not mp.port_open(root.http_port)


def test_nginx_dying_stops_tunneld_and_leaves_no_worker(procs, root):
    entry = root.start(procs)
    tunneld, nginx = root.daemon_pid("tunneld"), root.daemon_pid("nginx")
    os.kill(nginx, signal.SIGKILL)  # its workers survive a killed master unless someone stops them
    assert exit_within(entry, 10) == 1
    log = procs.log_text(entry)
    assert log_lines(log, rf"nginx \(pid {nginx}\) was killed by signal KILL; stopping tunneld")
    assert not pid_running(tunneld)
    assert not mp.port_open(root.http_port)
    assert not mp.port_open(root.ssh_port)


def test_a_daemon_exiting_with_an_error_is_reported_with_its_status(procs, root):
    # tunneld refuses a port range it cannot parse: the entrypoint must say which daemon stopped and how.
    p = procs.start([ENTRYPOINT], name="entrypoint", env=root.env(MP_PORT_RANGE="30000-20000"))
    assert exit_within(p, 15) == 1
    log = procs.log_text(p)
    assert log_lines(log, r"tunneld \(pid \d+\) exited with status [1-9]\d*; stopping nginx")
    assert "--port-range" in log  # tunneld's own explanation is in the same log


def test_sigterm_stops_both_cleanly_and_the_registry_forgets_the_tunnel(procs, workdir, root):
    key = os.path.join(workdir, "host_key")
    keygen(key)
    entry, _client = serve_one_target(procs, workdir, root, key)
    tunneld, nginx = root.daemon_pid("tunneld"), root.daemon_pid("nginx")
    os.kill(entry.pid, signal.SIGTERM)
    # Cleanly means without the SIGKILL the entrypoint sends (and logs) after MP_STOP_TIMEOUT (5 s here): the log
    # is the evidence, the deadline only has to leave room for that timeout on 2 shared cores.
    assert exit_within(entry, 20) == 0
    assert "still runs after" not in procs.log_text(entry), procs.log_text(entry)
    assert not pid_running(tunneld) and not pid_running(nginx)
    assert not mp.port_open(root.http_port) and not mp.port_open(root.ssh_port)
    assert root.live_targets() == []
    log = procs.log_text(entry)
    assert log_lines(log, "SIGTERM: stopping tunneld and nginx") and log_lines(log, "stopped$")
    assert not log_lines(log, "SIGKILL")


def test_healthcheck_reports_both_daemons(procs, root):
    entry = root.start(procs)
    healthy = root.run("healthcheck")
    assert healthy.returncode == 0, healthy.stderr
    os.kill(entry.pid, signal.SIGTERM)
    assert exit_within(entry, 5) == 0
    unhealthy = root.run("healthcheck")
    assert unhealthy.returncode == 1
    assert "unhealthy" in unhealthy.stderr


def test_other_commands_run_in_place_of_the_daemons(root):
    result = root.run("sh", "-c", "echo $MONITORING_PROXY_REGISTRY")
    assert result.returncode == 0
    assert result.stdout.strip() == root.registry


def process_ids(pid):
    """(real uid, effective capability mask) of a running process."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["CapEff"].strip(), 16)


# Documented in the report/README: as root, the image needs CHOWN (registry group, nginx temp dirs), SETUID and
# SETGID (nginx workers drop to www-data), plus NET_BIND_SERVICE for ports below 1024 where the runtime does not
# already allow them. Nothing else: no DAC_OVERRIDE, FOWNER, KILL, SYS_*.
LEAST_CAPABILITIES = "-all,+chown,+setuid,+setgid"


def test_runs_as_root_with_only_the_documented_capabilities(procs, workdir, root):
    key = os.path.join(workdir, "host_key")
    keygen(key)
    jail = ["setpriv", f"--bounding-set={LEAST_CAPABILITIES}", "--no-new-privs", "--"]
    entry, _client = serve_one_target(procs, workdir, root, key, pre_exec=jail)
    uid, caps = process_ids(root.daemon_pid("tunneld"))
    assert uid == 0 and caps == (1 << 0) | (1 << 6) | (1 << 7)  # CAP_CHOWN, CAP_SETGID, CAP_SETUID
    os.kill(entry.pid, signal.SIGHUP)  # a reload (new nginx workers) also works with these capabilities
    mp.wait_until(lambda: log_lines(procs.log_text(entry), "SIGHUP: re-reading"), what="the SIGHUP log line")
    assert http_get(root.http_port, "/web1/metrics") == (200, METRICS)
    os.kill(entry.pid, signal.SIGTERM)
    assert exit_within(entry, 5) == 0
    assert "[emerg]" not in procs.log_text(entry) and "[alert]" not in procs.log_text(entry)


def test_runs_as_an_unprivileged_user_on_high_ports(procs, workdir, root):
    key = os.path.join(workdir, "host_key")
    keygen(key)
    nobody = 65534

    def hand_root_to_nobody():
        for dirpath, dirnames, filenames in os.walk(root.dir):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, nobody, nobody)

    root.copy_programs()  # nobody may not reach the clone
    as_nobody = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    entry, _client = serve_one_target(procs, workdir, root, key, pre_exec=as_nobody, before_start=hand_root_to_nobody)
    for pid in (root.daemon_pid("tunneld"), root.daemon_pid("nginx")):
        assert process_ids(pid) == (nobody, 0)
    assert root.live_targets() == ["web1"]
    os.kill(entry.pid, signal.SIGTERM)
    assert exit_within(entry, 5) == 0


def test_sighup_rereads_the_authorized_keys(procs, workdir, root):
    first, second = os.path.join(workdir, "first"), os.path.join(workdir, "second")
    keygen(first)
    keygen(second)
    port = mp.free_port()
    root.port_range = f"{port}-{port}"
    root.write("etc/monitoring/targets", f"localhost:{port} web1\n")
    keys_file = root.write("etc/monitoring-proxy/authorized_keys", open(first + ".pub").read())
    entry = root.start(procs)
    exporter = start_exporter(procs, workdir, METRICS)
    refused = ssh_reverse(procs, root, second, f"{port}:127.0.0.1:{exporter}")
    assert exit_within(refused, 15) == 255

    with open(keys_file, "a") as f:
        f.write(open(second + ".pub").read())
    os.kill(entry.pid, signal.SIGHUP)
    # tunneld's own line: the entrypoint's comes before tunneld gets the signal.
    mp.wait_until(lambda: log_lines(procs.log_text(entry), r"tunneld.*authorized_keys.*keys=2"),
                  what="tunneld re-reading the keys")
    ssh_reverse(procs, root, second, f"{port}:127.0.0.1:{exporter}")
    mp.wait_until(lambda: http_get(root.http_port, "/web1/metrics") == (200, METRICS), timeout=15,
                  what="the tunnel of the key added by SIGHUP")
    assert entry.poll() is None


def test_a_new_host_registers_itself_with_the_shared_key_when_allowed(procs, workdir, root):
    key = os.path.join(workdir, "host_key")
    keygen(key)
    root.start(procs, env={"MONITORING_PROXY_PUBLIC_KEY": open(key + ".pub").read(), "MP_ALLOW_UNDECLARED": "yes"})
    exporter = start_exporter(procs, workdir, METRICS)
    ssh_reverse(procs, root, key, f"new-host:80:127.0.0.1:{exporter}")
    mp.wait_until(lambda: http_get(root.http_port, "/new-host/metrics") == (200, METRICS), timeout=15,
                  what="/new-host/metrics of a self-registered host")
    assert root.live_targets() == ["new-host"]


def test_undeclared_names_are_refused_by_default(procs, workdir, root):
    key = os.path.join(workdir, "host_key")
    keygen(key)
    root.start(procs, env={"MONITORING_PROXY_PUBLIC_KEY": open(key + ".pub").read()})
    client = ssh_reverse(procs, root, key, "new-host:80:127.0.0.1:9")
    assert exit_within(client, 15) == 255
    assert "remote port forwarding failed" in procs.log_text(client)
    assert root.live_targets() == []


def test_an_original_image_setup_works_unchanged(procs, workdir, root):
    """Targets file, hand-written block and host command exactly as the original image's users have them (with
    127.0.0.1 where they may write localhost: the suite must not depend on /etc/hosts)."""
    key = os.path.join(workdir, "monitoring_key")
    keygen(key)
    port = mp.free_port()
    root.port_range = f"{port}-{port}"
    root.write("etc/monitoring/targets", f"localhost:{port} external-host-1\n")
    root.write("etc/nginx/conf.d/monitoring-proxy.conf", f"""
location /external-host-1/ {{
    proxy_pass http://127.0.0.1:{port}/;
    proxy_set_header Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
}}
""")
    root.start(procs, env={"MONITORING_PROXY_PUBLIC_KEY": open(key + ".pub").read()})
    exporter = start_exporter(procs, workdir, METRICS)
    ssh_reverse(procs, root, key, f"{port}:127.0.0.1:{exporter}")
    mp.wait_until(lambda: http_get(root.http_port, "/external-host-1/metrics") == (200, METRICS), timeout=15,
                  what="the original setup's /external-host-1/metrics")
    assert root.live_targets() == ["external-host-1"]


def test_a_broken_hand_written_config_stops_the_start_with_nginx_message(root):
    root.write("etc/nginx/conf.d/monitoring-proxy.conf", "location /x/ { no_such_directive on; }\n")
    result = root.run("prepare")
    assert result.returncode == 1
    assert "nginx rejects its configuration" in result.stderr
    assert 'unknown directive "no_such_directive"' in result.stderr


def test_each_proxy_page_is_served_exactly_when_the_module_provides_it(procs, root):
    """docker/nginx/endpoints.conf names the pages and their directives; the entrypoint keeps those the built
    module knows, so the image works with the module before and after it gains them."""
    endpoints = open(os.path.join(NGINX_SHARE, "endpoints.conf")).read()
    pages = re.findall(r"^location = (/-/\S+) +\{ *(tunnel_[a-z_]+);", endpoints, re.M)
    assert {path for path, _ in pages} >= {"/-/sd", "/-/metrics", "/-/status"}
    module = open(built_path("ngx_http_tunnel_module.so"), "rb").read()
    root.write("etc/monitoring/targets", "localhost:20001 web1\n")
    entry = root.start(procs)
    log = procs.log_text(entry)
    for path, directive in pages:
        status, body = http_get(root.http_port, path)
        if directive.encode() in module:
            assert status == 200, (path, status, body)
            assert log_lines(log, f"pages on: .*{re.escape(path)}")
        else:
            assert status != 200, (path, status, body)  # the module's routing, not a page: "-" is no target name
            assert log_lines(log, f"pages off .*{re.escape(path)}")
    if b"tunnel_sd" in module:
        assert [group["labels"]["tunnel"] for group in json.loads(http_get(root.http_port, "/-/sd")[1])] == ["web1"]
    assert root.run("healthcheck").returncode == 0


def test_proxy_pages_can_be_turned_off(procs, root):
    entry = root.start(procs, env={"MP_NGINX_ENDPOINTS": "no"})
    assert log_lines(procs.log_text(entry), "pages off .*/-/status")
    assert http_get(root.http_port, "/-/counters")[0] != 200


def test_targets_outside_the_port_range_are_pointed_out_at_start(root):
    root.write("etc/monitoring/targets", "localhost:20001 inside\nlocalhost:9001 outside # a comment\n")
    result = root.run("prepare", env={"MP_PORT_RANGE": "20000-20010"})
    assert result.returncode == 0, result.stderr
    warnings = log_lines(result.stderr, "warning: target")
    assert len(warnings) == 1
    assert "target outside is on port 9001, outside MP_PORT_RANGE=20000-20010" in warnings[0]


@pytest.mark.parametrize("variable, value", [("MP_STOP_TIMEOUT", "5s"), ("MP_ALLOW_UNDECLARED", "true"),
                                             ("MP_NGINX_ENDPOINTS", "maybe"), ("MP_HTTP_LISTEN", "80; evil")])
def test_a_malformed_setting_stops_the_start_naming_it(root, variable, value):
    result = root.run("prepare", env={variable: value})
    assert result.returncode == 1
    assert f'{variable}="{value}"' in result.stderr


def test_an_nginx_config_of_your_own_is_used_as_it_is(procs, workdir, root):
    own = root.write("etc/nginx/own.conf", f"""
error_log stderr;
pid {workdir}/own-nginx.pid;
events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{root.http_port};
        location / {{ return 200 "own config\\n"; }}
    }}
}}
""")
    entry = root.start(procs, env={"MP_NGINX_CONF": own})  # no `daemon off;` in it: the entrypoint adds it
    assert http_get(root.http_port, "/anything") == (200, "own config\n")
    assert log_lines(procs.log_text(entry), "using .*own.conf as it is")
    os.kill(entry.pid, signal.SIGTERM)
    assert exit_within(entry, 5) == 0
