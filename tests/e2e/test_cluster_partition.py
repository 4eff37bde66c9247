"""Cluster mode when one proxy is silently cut off from etcd (every packet to etcd dropped, no reset: what a
partition looks like). Proxy A reaches the etcd members only through relays the test can freeze. Frozen: A notices
(degraded, logged, metric 0) and keeps serving the tunnel it holds; etcd expires A's lease, so B and C stop routing
to A and answer a fast 503 instead of hanging. Thawed: A takes a new lease, republishes, and is routed to again;
if the host moved to B meanwhile, A gives the name up instead of keeping a stale tunnel."""
import time

import pytest

import cluster_harness
import mp
import ssh_harness as s
from cluster_harness import declare_and_connect, etcd_up, served_everywhere
from freezable_relay import relays_for

SUPPORTED, WHY = cluster_harness.cluster_support()
if not SUPPORTED:
    pytest.skip(WHY, allow_module_level=True)


@pytest.fixture
def partitionable_a(cluster, etcd):
    """Proxy A restarted with --etcd pointing at one freezable relay per member; yields (A, relays)."""
    relays, endpoints = relays_for(etcd)
    a = cluster.proxies[0]
    try:
        a.tunneld.stop()
        a.tunneld.extra[a.tunneld.extra.index("--etcd") + 1] = endpoints
        a.start()
        yield a, relays
    finally:
        for r in relays:
            r.thaw()
        a.tunneld.stop()  # before its relays go: no reconnect storm against closed ports at teardown
        for r in relays:
            r.close()


def cut_off(a, relays):
    for r in relays:
        r.freeze()
    a.tunneld.wait_log("cluster degraded", timeout=20)
    mp.wait_until(lambda: etcd_up(a) == 0, 5, what="monitoring_proxy_cluster_etcd_up 0 on A")


def fast_status(proxy, path):
    started = time.monotonic()
    status = proxy.get(path, timeout=5)[0]
    return status, time.monotonic() - started


def test_a_partitioned_proxy_keeps_serving_loses_its_lease_and_rejoins(cluster, partitionable_a, workdir, exporter):
    a, relays = partitionable_a
    _, b, c = cluster.proxies
    declare_and_connect(cluster, workdir, exporter, a, "web1")
    mp.wait_until(lambda: served_everywhere(cluster, "web1"), 5, what="web1 through every proxy")

    cut_off(a, relays)
    # etcd expires A's lease (TTL 3 s): its tunnel key goes, and B and C stop routing to A.
    mp.wait_until(lambda: b.node_of("web1") is None, 20, what="A's lease expired: web1 has no holder in etcd")
    for p in (b, c):
        mp.wait_until(lambda: p.get("/web1/metrics", timeout=5)[0] == 503, 5, what=f"{p.node_id} answers 503")
        status, seconds = fast_status(p, "/web1/metrics")
        assert status == 503 and seconds < 1.0, (p.node_id, status, seconds)
    # A goes on serving the tunnel it holds, and every proxy still lists web1: Prometheus loses no target.
    assert a.fetch("/web1/bytes/100") == (200, s.body(100))
    assert a.sd_names() == b.sd_names() == c.sd_names() == ["web1"]
    assert len(a.log_lines("cluster degraded")) == 1, a.log_lines("cluster degraded")

    for r in relays:
        r.thaw()
    a.tunneld.wait_log("cluster reconnected", timeout=30)
    mp.wait_until(lambda: b.node_of("web1") == a.node_id, 10, what="A republished web1")
    mp.wait_until(lambda: served_everywhere(cluster, "web1"), 10, what="web1 through every proxy again")
    assert etcd_up(a) == 1
    assert not a.log_lines("forward removed"), a.log()


def test_a_host_that_moved_while_its_proxy_was_cut_off_stays_where_it_moved(cluster, partitionable_a, workdir,
                                                                          exporter):
    a, relays = partitionable_a
    _, b, c = cluster.proxies
    key, _ = declare_and_connect(cluster, workdir, exporter, a, "web1")
    mp.wait_until(lambda: served_everywhere(cluster, "web1"), 5, what="web1 through every proxy")
    cut_off(a, relays)
    mp.wait_until(lambda: b.node_of("web1") is None, 20, what="A's lease expired")
    # The host gives up on A (its keepalives would, in real life) and reconnects to B, while A's session is open.
    cluster.ssh(b, key, "web1", exporter.port)
    b.wait_forward("web1")
    mp.wait_until(lambda: c.node_of("web1") == b.node_id, 5, what="B holds web1 in etcd")
    mp.wait_until(lambda: served_everywhere(cluster, "web1", proxies=[b, c]), 5, what="web1 through B and C")

    for r in relays:
        r.thaw()
    a.tunneld.wait_log("cluster reconnected", timeout=30)
    # A's session is the older one: A must give web1 up, not publish it over B's.
    a.wait_forward("web1", event="forward removed", timeout=10)
    mp.wait_until(lambda: served_everywhere(cluster, "web1"), 10, what="web1 through every proxy, held by B")
    assert c.node_of("web1") == b.node_id and a.node_of("web1") == b.node_id
