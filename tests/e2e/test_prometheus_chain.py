"""The whole chain with the real programs: Prometheus (http_sd_configs pointed at the proxy) scrapes a real
node_exporter through an OpenSSH reverse tunnel into tunneld and nginx with the module. No edit and no restart
anywhere when hosts come, go and come back."""
import subprocess

import pytest

import mp
import nginx_harness as h
import ssh_harness as s
from prometheus_harness import Prometheus

PAGES = """
        location = /-/sd { tunnel_sd; }
        location = /-/metrics { tunnel_metrics; }
        location = /-/status { tunnel_status; }
"""


@pytest.fixture
def chain(workdir, procs, monkeypatch):
    monkeypatch.setenv("MONITORING_PROXY_REGISTRY_GROUP", h.REGISTRY_GROUP)  # tunneld creates it for nginx's workers
    exporter = procs.start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{mp.free_port()}"],
                           name="node_exporter")
    exporter_port = int(exporter.args[1].rsplit(":", 1)[1])
    mp.wait_until(lambda: mp.port_open(exporter_port), timeout=15, what="node_exporter")
    tunneld = s.Tunneld(procs, workdir).start()
    env = h.Env(workdir, procs)
    env.registry.path = tunneld.registry
    nginx = env.nginx(server_extra=PAGES).start()
    prometheus = Prometheus(procs, workdir, f"http://127.0.0.1:{nginx.port}/-/sd")
    yield tunneld, nginx, prometheus, exporter_port
    env.close()


def ssh_tunnel(procs, tunneld, key, name, exporter_port):
    return procs.start(["ssh", "-N", *s.SSH_OPTIONS, "-i", key, "-p", str(tunneld.port),
                        "-R", f"{name}:80:127.0.0.1:{exporter_port}", "monitoring@127.0.0.1"], name=f"ssh-{name}")


def test_hosts_are_scraped_with_no_edit_and_no_restart(chain, procs, workdir):
    tunneld, nginx, prometheus, exporter_port = chain
    key1 = s.keygen(workdir, "web1")
    tunneld.tunnelctl("add", "web1", "--key-file", key1 + ".pub", "--label", "env=prod")

    # Declared but not connected: Prometheus already knows the target, and it is down.
    mp.wait_until(lambda: prometheus.up("web1") and prometheus.up("web1")[1] == 0, timeout=30,
                  what="up{tunnel=web1} == 0 before the host connects")

    client = ssh_tunnel(procs, tunneld, key1, "web1", exporter_port)
    mp.wait_until(lambda: prometheus.up("web1") and prometheus.up("web1")[1] == 1, timeout=15,
                  what="up{tunnel=web1} == 1 within 15 s of the tunnel")
    labels_up = prometheus.up("web1")[0]
    assert labels_up["env"] == "prod" and labels_up["instance"] == "web1"
    mp.wait_until(lambda: prometheus.query('node_cpu_seconds_total{tunnel="web1"}'), timeout=15,
                  what="node_exporter series of web1")

    # The host goes away: the target stays and is down (alerts fire), it does not vanish.
    procs.stop(client)
    mp.wait_until(lambda: prometheus.up("web1") and prometheus.up("web1")[1] == 0, timeout=15,
                  what="up{tunnel=web1} == 0 after the client stopped")
    assert prometheus.up("web1")[0] == labels_up  # same series

    # It comes back: the same series goes up again.
    ssh_tunnel(procs, tunneld, key1, "web1", exporter_port)
    mp.wait_until(lambda: prometheus.up("web1") and prometheus.up("web1")[1] == 1, timeout=15,
                  what="up{tunnel=web1} == 1 after reconnecting")
    assert prometheus.up("web1")[0] == labels_up

    # A second host, added while everything runs, is scraped with no restart of anything.
    pids = (tunneld.proc.pid, nginx.worker_pids(), prometheus.proc.pid)
    key2 = s.keygen(workdir, "web2")
    tunneld.tunnelctl("add", "web2", "--key-file", key2 + ".pub")
    ssh_tunnel(procs, tunneld, key2, "web2", exporter_port)
    mp.wait_until(lambda: prometheus.up("web2") and prometheus.up("web2")[1] == 1, timeout=15,
                  what="up{tunnel=web2} == 1")
    assert (tunneld.proc.pid, nginx.worker_pids(), prometheus.proc.pid) == pids

    # The proxy's own metrics agree, and pass promtool.
    status, text, _ = nginx.get("/-/metrics")
    assert status == 200
    assert mp.metric_value(text, "monitoring_proxy_tunnel_up", tunnel="web1") == 1
    assert mp.metric_value(text, "monitoring_proxy_tunnel_up", tunnel="web2") == 1
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
