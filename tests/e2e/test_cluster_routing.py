"""Cluster mode, steady state: three proxies (tunneld --etcd + nginx each, own registry) on a real 3-member etcd
cluster act as one. Any proxy serves any target (one hop to the proxy holding the tunnel), /-/sd is the same on
every proxy, tunnelctl on any proxy changes the whole cluster within a second, and name binding holds
cluster-wide. Without --etcd, nothing contacts etcd."""
import json
import subprocess
import time

import pytest

import cluster_harness
import mp
import ssh_harness as s

SUPPORTED, WHY = cluster_harness.cluster_support()
if not SUPPORTED:
    pytest.skip(WHY, allow_module_level=True)

SCRAPE = "/web1/bytes/150000"


def connect(cluster, workdir, exporter, proxy, name="web1", key=None):
    """Declares `name` bound to a fresh key (tunnelctl --etcd on `proxy`), connects a host to `proxy`, and waits
    until that proxy's tunneld logs the forward."""
    key = key or s.keygen(workdir, name)
    proxy.tunnelctl("add", name, "--key-file", key + ".pub", "--label", "env=prod")
    client = cluster.ssh(proxy, key, name, exporter.port)
    proxy.wait_forward(name)
    return key, client


def within(seconds, predicate, what):
    """Polls `predicate` for at most `seconds` and returns the elapsed time (the issue's 1 s bounds)."""
    start = time.monotonic()
    mp.wait_until(predicate, timeout=seconds, interval=0.01, what=what)
    return time.monotonic() - start


def test_a_host_on_a_is_scraped_through_a_b_and_c_with_identical_bytes(cluster, workdir, exporter):
    a, b, c = cluster.proxies
    connect(cluster, workdir, exporter, a)
    # Routable through B and C within 1 s of A's `forward added`.
    for p in (b, c):
        within(1.0, lambda: p.fetch(SCRAPE)[0] == 200, f"{SCRAPE} -> 200 through {p.node_id}")
    expected = s.body(150000)
    for p in (a, b, c):
        status, data = p.fetch(SCRAPE)
        assert status == 200 and data == expected, (p.node_id, status, len(data))
    # /-/sd is byte-identical on every proxy apart from the address Prometheus is told to scrape (the Host of
    # the request, so each proxy names itself); `instance` is the target's name, never a proxy address.
    sds = [p.sd()[0] for p in (a, b, c)]
    for sd in sds:
        for group in sd:
            group["targets"] = ["<proxy>"]
    assert sds[0] == sds[1] == sds[2]
    (group,) = sds[0]
    assert group["labels"]["instance"] == "web1" and group["labels"]["tunnel"] == "web1"
    assert group["labels"]["env"] == "prod"
    # Every proxy knows which node holds the tunnel.
    assert {p.node_of("web1") for p in (a, b, c)} == {a.node_id}


def test_sd_is_identical_on_every_proxy_for_many_targets(cluster, workdir, exporter):
    a, b, c = cluster.proxies
    for i, p in enumerate((a, b, c, a, b)):
        p.tunnelctl("add", f"host{i}", "--label", f"rack=r{i % 2}", "--metrics-path", f"/m{i}")
    connect(cluster, workdir, exporter, b, name="web1")
    want = sorted(["host0", "host1", "host2", "host3", "host4", "web1"])
    for p in (a, b, c):
        mp.wait_until(lambda: p.sd_names() == want, 2, what=f"/-/sd of {p.node_id} lists {want}")
    bodies = [p.fetch("/-/sd", headers={"Host": "proxy.example:80"})[1] for p in (a, b, c)]
    assert bodies[0] == bodies[1] == bodies[2], bodies
    assert json.loads(bodies[0])[0]["targets"] == ["proxy.example:80"]


def test_tunnelctl_on_b_is_seen_by_a_within_a_second(cluster, workdir, exporter):
    a, b, c = cluster.proxies
    key = s.keygen(workdir, "web2")
    assert a.get("/web2/metrics")[0] == 404
    b.tunnelctl("add", "web2", "--key-file", key + ".pub")
    # Declared on B: A's discovery lists it and A's routing knows it (declared, not connected: 503, not 404).
    within(1.0, lambda: "web2" in a.sd_names(), "web2 in A's /-/sd")
    within(1.0, lambda: a.get("/web2/metrics")[0] == 503, "A answers 503 (declared, not connected) for web2")
    b.tunnelctl("label", "web2", "team=ops")
    within(1.0, lambda: [g["labels"].get("team") for g in a.sd()[0] if g["labels"]["tunnel"] == "web2"] == ["ops"],
           "team=ops on web2 in A's /-/sd")
    # Connected through C: A routes to it; then removed on B: gone from A's discovery and routing.
    cluster.ssh(c, key, "web2", exporter.port)
    within(5.0, lambda: a.fetch("/web2/bytes/10")[0] == 200, "web2 routable through A")
    b.tunnelctl("rm", "web2")
    within(1.0, lambda: "web2" not in a.sd_names(), "web2 gone from A's /-/sd")
    within(1.0, lambda: a.get("/web2/bytes/10")[0] == 404, "A answers 404 for the removed web2")
    # A removed target's tunnel ends on the proxy holding it, like in single-node mode.
    c.tunneld.wait_log("forward removed")


def test_tunnelctl_ls_names_the_proxy_holding_each_tunnel(cluster, workdir, exporter):
    a, b, c = cluster.proxies
    connect(cluster, workdir, exporter, c, name="web1")
    b.tunnelctl("add", "idle")
    mp.wait_until(lambda: {e["name"]: e.get("node") for e in a.ls()}.get("web1") == c.node_id, 2,
                  what="ls on A says proxy-c holds web1")
    rows = {e["name"]: e for e in a.ls()}
    assert rows["web1"]["state"] == "connected"
    assert not rows["idle"].get("node")
    table = a.tunnelctl("ls").stdout
    assert "proxy" in table.splitlines()[0].lower(), table
    assert c.node_id in [line for line in table.splitlines() if line.startswith("web1")][0], table


def test_another_key_claiming_web1_on_c_is_refused(cluster, workdir, exporter):
    a, b, c = cluster.proxies
    connect(cluster, workdir, exporter, a, name="web1")
    intruder = s.keygen(workdir, "intruder")
    b.tunnelctl("add", "other", "--key-file", intruder + ".pub")
    mp.wait_until(lambda: "other" in c.sd_names(), 2, what="other known on C")
    r = c.tunneld.ssh_run(intruder, "-N", "-R", f"web1:80:127.0.0.1:{exporter.port}", user="monitoring")
    assert r.returncode == 255 and "remote port forwarding failed" in r.stderr, r
    c.tunneld.wait_log("takeover attempt")
    # A keeps web1, and every proxy still routes to A's tunnel.
    assert "forward removed" not in a.log()
    for p in (a, b, c):
        assert p.fetch("/web1/bytes/100") == (200, s.body(100)), p.node_id
        assert p.node_of("web1") == a.node_id


def test_a_hop_never_hops_again(cluster, workdir, exporter):
    """A request that already made its one hop (Monitoring-Proxy-Hop) to a proxy not holding the tunnel gets a
    fast 503 there, never a second hop or a hang: what a stale etcd key pointing at the wrong node leads to."""
    a, b, c = cluster.proxies
    connect(cluster, workdir, exporter, a, name="web1")
    mp.wait_until(lambda: b.fetch("/web1/bytes/10")[0] == 200, 2, what="B routes web1")
    start = time.monotonic()
    status, _ = b.fetch("/web1/bytes/10", headers={"Monitoring-Proxy-Hop": "proxy-c"})
    assert status == 503 and time.monotonic() - start < 1.0
    # The holder itself serves a hopped request locally.
    assert a.fetch("/web1/bytes/10", headers={"Monitoring-Proxy-Hop": "proxy-b"}) == (200, s.body(10))


def test_without_etcd_flag_nothing_contacts_etcd(etcd, workdir, procs, exporter, monkeypatch):
    """Single-node mode beside a running etcd: tunneld and tunnelctl without --etcd (and without
    $MONITORING_PROXY_ETCD) open no connection to any etcd member and write nothing there."""
    monkeypatch.delenv("MONITORING_PROXY_ETCD", raising=False)
    t = s.Tunneld(procs, workdir).start()
    key = s.keygen(workdir, "solo")
    t.tunnelctl("add", "solo", "--key-file", key + ".pub")
    t.ssh(key, f"solo:80:127.0.0.1:{exporter.port}")
    t.wait_log("forward added")
    assert "cluster" not in t.log()
    etcd_ports = {m.client_port for m in etcd.members}
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
    ours = [line for line in out.splitlines() if f"pid={t.proc.pid}," in line]
    assert not [line for line in ours if any(f":{port} " in line + " " for port in etcd_ports)], ours
    assert etcd.get_prefix("/") == {}
