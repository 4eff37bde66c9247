"""Cluster mode's one-hop route, with real nginx and the module on two loopback "proxies", each with its own
registry written by mp-registry-fixture (no etcd, no tunneld): node A holds web1's tunnel (a test exporter), node
B's cluster view says A holds it. Scraping B returns A's bytes, marked with Monitoring-Proxy-Hop; a request that
already hopped is never forwarded again; a dead peer answers fast."""
import json
import os
import time

import mp
import nginx_harness as h


COUNTERS = "        location = /-/counters { tunnel_counters; }"


class Cluster:
    """Node A (env's registry, its own nginx) holding web1 -> exporter; node B (second registry and nginx) whose
    cluster view says node-a holds web1."""

    def __init__(self, env, b_location_extra=h.CLUSTER_LOCATION_LINES):
        self.env = env
        self.exporter = env.target("web1")
        env.registry.fixture("cluster-self", "node-a")
        self.a = env.nginx(server_extra=COUNTERS).start()
        b_dir = os.path.join(env.workdir, "node-b")
        os.makedirs(b_dir, mode=0o755)
        self.b_registry = h.Registry(os.path.join(b_dir, "registry"))
        self.b_registry.add("web1")
        self.b_registry.fixture("cluster-self", "node-b")
        self.b = env.nginx(registry=self.b_registry, workdir=b_dir, location_extra=b_location_extra,
                            server_extra=COUNTERS).start()
        self.b_registry.fixture("cluster-tunnel", "web1", "node-a", f"127.0.0.1:{self.a.port}")
        self.b_registry.fixture("cluster-node", "node-a", f"127.0.0.1:{self.a.port}", "1", "alive")


def test_scraping_the_other_proxy_returns_the_holders_bytes_with_the_hop_header(env):
    c = Cluster(env)
    direct = c.a.get("/web1/metrics?x=1")
    hopped = c.b.get("/web1/metrics?x=1")
    assert hopped[:2] == direct[:2] == (200, "web1 /metrics?x=1\n")
    # The exporter saw the local path both times; the hop arrived at A carrying B's node id.
    assert [r["path"] for r in c.exporter.requests] == ["/metrics?x=1", "/metrics?x=1"]
    access_a = open(os.path.join(c.a.prefix, "logs", "access.log")).read().splitlines()
    assert access_a[-1].split('"')[1] == "GET /web1/metrics?x=1 HTTP/1.1"  # the ORIGINAL URI, args included
    # The exporter never sees the hop header: A's proxy_set_header with an empty $tunnel_hop removes it.
    assert all("Monitoring-Proxy-Hop" not in r["headers"] for r in c.exporter.requests)
    # Escaped paths survive the hop as they survive a local route.
    assert c.b.get("/web1/a%20b")[:2] == (200, "web1 /a%20b\n")


def test_the_hop_header_reaches_the_peer(env):
    """A stands in for nothing: B's cluster record points at a backend that records headers, so the header and
    the URI B sends are seen as they are on the wire."""
    c = Cluster(env)
    peer = env.backend("peer")
    c.b_registry.fixture("cluster-tunnel", "web1", "node-a", f"127.0.0.1:{peer.port}")
    assert c.b.get("/web1/metrics?a=b")[:2] == (200, "peer /web1/metrics?a=b\n")
    seen = peer.requests[-1]
    assert seen["path"] == "/web1/metrics?a=b"
    assert seen["headers"]["Monitoring-Proxy-Hop"] == "node-b"


def test_a_request_that_already_hopped_gets_a_fast_503_and_a_logged_reason(env):
    c = Cluster(env)
    started = time.monotonic()
    status, body, _ = c.b.get("/web1/metrics", headers={"Monitoring-Proxy-Hop": "node-c"})
    assert time.monotonic() - started < 1.0
    assert status == 503
    assert body == 'target "web1" is not connected to this proxy and was not forwarded to the one holding it\n'
    assert c.exporter.requests == []
    mp.wait_until(lambda: "already forwarded once (Monitoring-Proxy-Hop: \"node-c\")" in c.b.error_log(),
                  what="the refusal's reason in B's error log")
    # A local tunnel still wins over the header: the holder serves a hop.
    assert c.a.get("/web1/metrics", headers={"Monitoring-Proxy-Hop": "node-b"})[0] == 200


def test_a_cluster_record_pointing_at_a_dead_port_fails_fast(env):
    c = Cluster(env)
    c.b_registry.fixture("cluster-tunnel", "web1", "node-a", f"127.0.0.1:{mp.free_port()}")
    started = time.monotonic()
    status = c.b.status("/web1/metrics", timeout=10)
    assert time.monotonic() - started < 2.0
    assert status == 502
    assert c.exporter.requests == []


def test_hop_counts_once_per_target_on_the_entry_proxy(env):
    c = Cluster(env)
    for _ in range(3):
        assert c.b.status("/web1/metrics") == 200
    counters_a = c.a.get("/-/counters")
    counters_b = c.b.get("/-/counters")
    assert counters_a[0] == counters_b[0] == 200, (counters_a, counters_b)
    a, b = json.loads(counters_a[1]), json.loads(counters_b[1])
    assert b["targets"]["web1"]["requests"] == 3
    assert b["targets"]["web1"]["outcomes"]["hopped"] == 3
    assert "web1" not in a["targets"]  # served by hop: in A's totals only
    assert a["totals"]["requests"] == 3


def test_a_config_without_the_hop_header_never_hops(env):
    """A hand-written config from before cluster mode: single-node routing keeps working, and a cluster-held
    target is refused (a hop without the header could bounce between proxies) with the line to add."""
    c = Cluster(env, b_location_extra="")
    c.b_registry.add("web2")
    local = env.backend("web2")
    c.b_registry.live("web2", local.port)
    assert c.b.get("/web2/metrics")[:2] == (200, "web2 /metrics\n")
    started = time.monotonic()
    assert c.b.status("/web1/metrics") == 503
    assert time.monotonic() - started < 1.0
    assert c.exporter.requests == []
    mp.wait_until(lambda: "proxy_set_header Monitoring-Proxy-Hop $tunnel_hop;" in c.b.error_log(),
                  what="the missing line named in B's error log")


def test_a_corrupt_cluster_record_is_a_logged_error_for_that_target_only(env):
    c = Cluster(env)
    c.b_registry.add("web3")
    c.b_registry.fixture("cluster-corrupt", "web3")
    assert c.b.status("/web3/metrics") == 500
    assert c.b.status("/web1/metrics") == 200
    mp.wait_until(lambda: "cluster tunnel record: 16 trailing bytes" in c.b.error_log(),
                  what="the decode error in B's error log")


def test_leaving_the_cluster_is_single_node_again(env):
    c = Cluster(env)
    assert c.b.status("/web1/metrics") == 200
    c.b_registry.fixture("cluster-leave", "-")
    assert c.b.get("/web1/metrics")[:2] == (503, 'target "web1" is not connected\n')


PAGES = COUNTERS + "\n        location = /-/metrics { tunnel_metrics; }\n        location = /-/status { tunnel_status; }" \
    "\n        location = /-/sd { tunnel_sd; }"


def test_metrics_status_and_discovery_show_the_cluster(env):
    env.registry.add("web1")
    exporter = env.backend("web1")
    env.registry.live("web1", exporter.port)
    single = env.nginx(server_extra=PAGES).start()
    assert "cluster_" not in single.get("/-/metrics")[1]  # single-node: no cluster families at all
    sd_single = single.get("/-/sd")[1]

    env.registry.fixture("cluster-self", "node-a", "degraded")
    env.registry.fixture("cluster-node", "node-a", f"127.0.0.1:{single.port}", "1", "alive")
    env.registry.fixture("cluster-node", "node-b", "127.0.0.2:8080", "2", "dead")
    env.registry.add("db")
    env.registry.fixture("cluster-tunnel", "db", "node-b", "127.0.0.2:8080")
    metrics = single.get("/-/metrics")[1]
    assert "monitoring_proxy_cluster_etcd_up 0\n" in metrics
    assert 'monitoring_proxy_cluster_node_alive{node="node-b"} 0\n' in metrics
    assert 'monitoring_proxy_cluster_node_tunnels{node="node-b"} 2\n' in metrics
    assert 'monitoring_proxy_cluster_tunnel_holder{tunnel="web1",node="node-a"} 1\n' in metrics
    assert 'monitoring_proxy_cluster_tunnel_holder{tunnel="db",node="node-b"} 1\n' in metrics
    status = json.loads(single.get("/-/status?format=json")[1])
    assert status["cluster"]["node"] == "node-a"
    assert status["cluster"]["etcd"] == "degraded"
    assert status["cluster"]["nodes"]["node-b"] == {**status["cluster"]["nodes"]["node-b"], "alive": False,
                                                     "tunnels": 2, "http": "127.0.0.2:8080"}
    assert status["cluster"]["holders"] == {"db": "node-b", "web1": "node-a"}
    assert 'id="nodes"' in single.get("/-/status")[1]
    # Discovery is unchanged: instance = target name, no proxy address.
    sd = json.loads(single.get("/-/sd")[1])
    assert sorted(t["labels"]["instance"] for t in sd) == ["db", "web1"]
    assert json.loads(sd_single)[0] in sd


def test_a_corrupt_cluster_record_is_skipped_and_reported_by_metrics_and_status(env):
    """The pages that would report a damaged record must not be what it takes down: /-/metrics and /-/status
    answer 200 without it, count it, list it and log it; discovery does not read cluster records at all."""
    env.registry.add("web1")
    exporter = env.backend("web1")
    env.registry.live("web1", exporter.port)
    env.registry.add("web3")
    env.registry.fixture("cluster-self", "node-a")
    env.registry.fixture("cluster-tunnel", "web3", "node-b", "127.0.0.2:8080")
    env.registry.fixture("cluster-corrupt", "web3")
    nginx = env.nginx(server_extra=PAGES).start()
    status, metrics, _ = nginx.get("/-/metrics")
    assert status == 200, metrics
    assert "monitoring_proxy_registry_unreadable_records 1\n" in metrics
    assert 'monitoring_proxy_tunnel_up{tunnel="web1"} 1\n' in metrics
    assert 'monitoring_proxy_cluster_tunnel_holder{tunnel="web3"' not in metrics
    page = json.loads(nginx.get("/-/status?format=json")[1])
    assert [(u["kind"], u["name"]) for u in page["unreadable"]] == [("cluster tunnel", "web3")]
    assert "trailing bytes" in page["unreadable"][0]["error"]
    assert 'id="unreadable"' in nginx.get("/-/status")[1]
    assert sorted(t["labels"]["instance"] for t in json.loads(nginx.get("/-/sd")[1])) == ["web1", "web3"]
    mp.wait_until(lambda: 'the registry record of cluster tunnel "web3" is unreadable' in nginx.error_log(),
                  what="the skipped record in error.log")
    env.registry.fixture("cluster-tunnel", "web3", "node-b", "127.0.0.2:8080")  # repaired: nothing skipped
    assert "monitoring_proxy_registry_unreadable_records 0\n" in nginx.get("/-/metrics")[1]
    assert json.loads(nginx.get("/-/status?format=json")[1])["unreadable"] == []
