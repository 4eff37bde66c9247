"""Cluster mode, losing a proxy: when proxy A dies (SIGKILL to its tunneld and nginx, as when its machine dies)
its hosts reconnect to B or C (docker/host/monitoring-proxy-tunnel, the proxies in order) and are scraped again,
with one series per target in Prometheus and at most one keepalive window of up == 0. A host reconnecting to
another proxy while its stale session is still open is served there at once; the old proxy drops it."""
import signal
import time

import pytest

import cluster_harness
import mp
import ssh_harness as s
from prometheus_harness import Prometheus

SUPPORTED, WHY = cluster_harness.cluster_support()
if not SUPPORTED:
    pytest.skip(WHY, allow_module_level=True)

# tunneld --keepalive 1 (--keepalive-max 3 by default): a silent session is dropped after 3 s, the proxy's
# keepalive window. The hosts' ssh keepalive (1 s x 2) is shorter still.
KEEPALIVE_WINDOW = 3.0
SCRAPE_INTERVAL = 1.0


@pytest.fixture
def node_exporter(procs):
    port = mp.free_port()
    procs.start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                 "--collector.disable-defaults", "--collector.loadavg", "--collector.time"], name="node_exporter")
    mp.wait_until(lambda: mp.port_open(port), timeout=15, what="node_exporter")
    return port


def up_series(prometheus, name):
    return prometheus.query(f'up{{tunnel="{name}"}}')


def is_up(prometheus, name):
    result = up_series(prometheus, name)
    return len(result) == 1 and result[0][1] == 1


def test_sigkill_of_proxy_a_moves_its_hosts_to_b_and_c(cluster, workdir, procs, node_exporter):
    a, b, c = cluster.proxies
    names = ["web1", "web2", "web3"]
    for name in names:
        key = s.keygen(workdir, name)
        b.tunnelctl("add", name, "--key-file", key + ".pub", "--label", "env=prod")
        cluster.host(key, name, node_exporter, [a, b, c])
    for name in names:
        a.wait_forward(name)
    # Prometheus discovers through B (a surviving proxy; an HA pair's second server would ask C) and scrapes B,
    # which hops to A for every target.
    prometheus = Prometheus(procs, workdir, f"http://{b.http}/-/sd")
    for name in names:
        mp.wait_until(lambda: is_up(prometheus, name), 30, what=f"up{{tunnel={name}}} == 1 through B")
    labels_before = {name: up_series(prometheus, name)[0][0] for name in names}

    killed_at = time.time()
    a.kill()
    # Each host's session ended with A's process; its wrapper connects to B next, which takes the name over from
    # A's key in etcd (A's lease has not even expired yet).
    for name in names:
        b.wait_forward(name, timeout=15)
    for name in names:
        mp.wait_until(lambda: is_up(prometheus, name), 20, what=f"up{{tunnel={name}}} == 1 again after A died")
        assert b.node_of(name) == b.node_id and c.node_of(name) == b.node_id
        assert c.fetch(f"/{name}/metrics")[0] == 200
    # Let a few more scrapes land, then read every sample since just before the kill.
    recovered_at = time.time()
    mp.wait_until(lambda: all(is_up(prometheus, n) for n in names) and time.time() > recovered_at + 3, 10,
                  what="three more scrape intervals")
    window = time.time() - killed_at + 5
    for name in names:
        series = prometheus.samples(f'up{{tunnel="{name}"}}', window)
        assert len(series) == 1, f"{name}: more than one series: {[lbl for lbl, _ in series]}"
        labels, samples = series[0]
        assert labels == labels_before[name], (labels, labels_before[name])
        down = [t for t, v in samples if v == 0 and t >= killed_at - SCRAPE_INTERVAL]
        assert len(down) * SCRAPE_INTERVAL <= KEEPALIVE_WINDOW + SCRAPE_INTERVAL, \
            f"{name} was down for {len(down)} scrapes: {samples}"
        assert samples[-1][1] == 1

    # A comes back: its hosts stay where they are (no flapping), and A serves them through one hop to B.
    a.start()
    for name in names:
        mp.wait_until(lambda: a.fetch(f"/{name}/metrics")[0] == 200, 5, what=f"{name} through the restarted A")
        assert a.node_of(name) == b.node_id
    assert not a.log_lines("forward added")


def test_reconnect_to_b_while_the_stale_session_on_a_is_open(cluster, workdir, exporter):
    a, b, c = cluster.proxies
    key = s.keygen(workdir, "web1")
    c.tunnelctl("add", "web1", "--key-file", key + ".pub")
    stale = cluster.ssh(a, key, "web1", exporter.port)
    a.wait_forward("web1")
    mp.wait_until(lambda: c.fetch("/web1/bytes/10")[0] == 200, 2, what="web1 through C")
    # The host's link to A hangs (a frozen client keeps its TCP connection open and answers nothing); A still
    # holds the session when the host reconnects to B.
    stale.send_signal(signal.SIGSTOP)
    try:
        fresh = cluster.ssh(b, key, "web1", exporter.port)
        b.wait_forward("web1")
        started = time.monotonic()
        # B serves it at once, and so does every other proxy (only the fresh session can answer: the stale one is
        # frozen). A drops its forward within a second.
        for p in (b, c, a):
            mp.wait_until(lambda: p.fetch("/web1/bytes/1000", timeout=2) == (200, s.body(1000)), 1.0,
                          interval=0.01, what=f"web1 through {p.node_id} from the fresh session")
        removed = mp.wait_until(lambda: a.log_lines("forward removed", "target=web1 "), 1.0 - min(
            time.monotonic() - started, 0.5), interval=0.01, what="A drops web1")
        assert "taken_over_by_node" in removed[-1] and f"node={b.node_id}" in removed[-1], removed
        assert [p.node_of("web1") for p in (a, b, c)] == [b.node_id] * 3
        assert any("takeover" in line and f"from_node={a.node_id}" in line for p in (a, b)
                   for line in p.log().splitlines()), b.log()
        assert fresh.poll() is None
    finally:
        stale.send_signal(signal.SIGCONT)
