"""Cluster mode when etcd fails: losing one member of three changes nothing; losing all of them leaves every proxy
serving the tunnels it holds and the targets it last knew (degraded, logged once, shown by a metric); when etcd is
back the cluster reconciles. A proxy whose watch revision was compacted away re-reads everything."""
import json

import pytest

import cluster_harness
from cluster_harness import declare_and_connect, etcd_up, served_everywhere
import mp
import ssh_harness as s

SUPPORTED, WHY = cluster_harness.cluster_support()
if not SUPPORTED:
    pytest.skip(WHY, allow_module_level=True)


def leader_index(etcd):
    status = json.loads(etcd.etcdctl("endpoint", "status", "-w", "json").stdout)
    leader = status[0]["Status"]["leader"]
    for i, m in enumerate(etcd.members):
        if any(e["Endpoint"] == m.client_url and e["Status"]["header"]["member_id"] == leader for e in status):
            return i
    raise AssertionError(f"no leader in {status}")


def test_one_etcd_member_killed_changes_nothing(cluster, etcd, workdir, exporter):
    a, b, c = cluster.proxies
    declare_and_connect(cluster, workdir, exporter, a, "web1")
    mp.wait_until(lambda: served_everywhere(cluster, "web1"), 2, what="web1 through every proxy")
    sd_before = [p.sd()[1] for p in cluster.proxies]
    # The leader, the harder case: an election, and etcd 3.4 resets every lease to its full TTL.
    killed = etcd.kill(leader_index(etcd))
    etcd.wait_healthy(members=[m for m in etcd.members if m.running()])
    assert served_everywhere(cluster, "web1")
    assert [p.sd()[1] for p in cluster.proxies] == sd_before
    # Changes keep flowing through the two members left.
    c.tunnelctl("add", "web2", "--label", "env=dev")
    mp.wait_until(lambda: "web2" in a.sd_names() and "web2" in b.sd_names(), 2, what="web2 on A and B")
    for p in cluster.proxies:
        assert not p.log_lines("cluster degraded"), p.log()
        assert not p.log_lines("forward removed"), p.log()
        assert etcd_up(p) == 1
        assert p.node_of("web1") == a.node_id
        assert p.tunneld.proc.poll() is None
    etcd.restart(etcd.members.index(killed))
    assert served_everywhere(cluster, "web1")


def test_a_watch_whose_member_dies_resumes_from_its_revision_without_reading_everything(cluster, etcd, workdir,
                                                                                        exporter):
    """Every mirror watches on the first endpoint (member 0). Killing it ends those watches; each resumes on another
    member from the revision after the last one it applied, and a change made meanwhile is not lost."""
    a, b, c = cluster.proxies
    declare_and_connect(cluster, workdir, exporter, a, "web1")
    mp.wait_until(lambda: served_everywhere(cluster, "web1"), 2, what="web1 through every proxy")
    etcd.kill(0)
    etcd.wait_healthy(members=[m for m in etcd.members if m.running()])
    c.tunnelctl("add", "web2", "--label", "env=dev")  # written while the watches may still be moving
    for p in cluster.proxies:
        mp.wait_until(lambda: p.log_lines("cluster watch ended", "resuming from revision="), 10,
                      what=f"{p.node_id} resumes its watch")
        assert not p.log_lines("cluster watch ended", "listing again"), p.log()
        assert not p.log_lines("cluster degraded"), p.log()
    mp.wait_until(lambda: all("web2" in p.sd_names() for p in cluster.proxies), 3, what="web2 on every proxy")
    assert served_everywhere(cluster, "web1")
    etcd.restart(0)


def test_all_etcd_stopped_then_back(cluster, etcd, workdir, exporter):
    """While etcd is down nothing can be declared (tunnelctl --etcd has no quorum to write to), so "a target added
    while it was down" is a tunnel that came up during the outage: web2's host reconnects to C, which knows web2's
    key from its mirror and accepts it. After etcd is back C publishes it, and A and B route to C. "A tunnel that
    ended" is web1's, whose host leaves during the outage: A must not keep a stale key for it in etcd. And no
    declared target is lost: web3, declared and never connected, is listed everywhere throughout."""
    a, b, c = cluster.proxies
    _, client1 = declare_and_connect(cluster, workdir, exporter, a, "web1")
    key2, client2 = declare_and_connect(cluster, workdir, exporter, b, "web2")
    a.tunnelctl("add", "web3", "--label", "env=prod")
    names = ["web1", "web2", "web3"]
    for p in cluster.proxies:
        mp.wait_until(lambda: p.sd_names() == names, 2, what=f"{p.node_id} lists {names}")
    sd_before = [p.sd()[1] for p in cluster.proxies]
    mp.wait_until(lambda: served_everywhere(cluster, "web1") and served_everywhere(cluster, "web2"), 2,
                  what="web1 and web2 through every proxy")

    etcd.stop_all()
    for p in cluster.proxies:
        p.tunneld.wait_log("cluster degraded", timeout=30)
        mp.wait_until(lambda: etcd_up(p) == 0, 5, what=f"monitoring_proxy_cluster_etcd_up 0 on {p.node_id}")
    # Degraded: the held tunnels are served through every proxy (the nodes' HTTP addresses are known), and
    # discovery is what it was, so Prometheus loses no target.
    assert served_everywhere(cluster, "web1") and served_everywhere(cluster, "web2")
    assert [p.sd()[1] for p in cluster.proxies] == sd_before
    # web2's host moves to C during the outage; web1's host leaves.
    cluster.procs.stop(client2)
    b.wait_forward("web2", event="forward removed")
    cluster.ssh(c, key2, "web2", exporter.port)
    c.wait_forward("web2")
    assert c.fetch("/web2/bytes/100") == (200, s.body(100))
    cluster.procs.stop(client1)
    a.wait_forward("web1", event="forward removed")

    etcd.start_all_stopped()
    for p in cluster.proxies:
        p.tunneld.wait_log("cluster reconnected", timeout=30)
        mp.wait_until(lambda: etcd_up(p) == 1, 5, what=f"monitoring_proxy_cluster_etcd_up 1 on {p.node_id}")
        # Logged once per outage, however long it lasted.
        assert len(p.log_lines("cluster degraded")) == 1, p.log_lines("cluster degraded")
    # Reconciled: web2 is C's everywhere and served through every proxy; web1's tunnel is gone (declared, not
    # connected: 503 everywhere); every declared target is still listed.
    for p in cluster.proxies:
        mp.wait_until(lambda: p.node_of("web2") == c.node_id, 5, what=f"{p.node_id} sees web2 on C")
        mp.wait_until(lambda: p.node_of("web1") is None, 5, what=f"{p.node_id} sees web1 not connected")
        mp.wait_until(lambda: p.get("/web1/bytes/100")[0] == 503, 5, what=f"web1 -> 503 on {p.node_id}")
        assert p.sd_names() == names
    # node_of reads etcd itself; routing follows each proxy's mirror, which applies the watch a moment later.
    mp.wait_until(lambda: served_everywhere(cluster, "web2"), 5, what="web2 through every proxy")
    assert sorted(e["name"] for e in a.ls()) == names
    # And the cluster takes changes again.
    b.tunnelctl("add", "web4")
    mp.wait_until(lambda: all("web4" in p.sd_names() for p in cluster.proxies), 2, what="web4 everywhere")


def test_a_compacted_watch_revision_means_reading_everything_again(cluster, etcd, workdir, exporter):
    """B's tunneld is down (its nginx serves on) while the cluster changes and etcd compacts its history past
    B's last applied revision: restarted, B cannot resume its watch and must list the prefix again."""
    a, b, c = cluster.proxies
    declare_and_connect(cluster, workdir, exporter, a, "web1")
    a.tunnelctl("add", "gone1")
    mp.wait_until(lambda: b.sd_names() == ["gone1", "web1"], 2, what="B lists gone1 and web1")
    b.tunneld.stop()
    a.tunnelctl("rm", "gone1")
    for i in range(20):
        c.tunnelctl("add", f"new{i}")
    for i in range(0, 20, 2):
        c.tunnelctl("rm", f"new{i}")
    etcd.compact()
    b.start()
    want = sorted(["web1"] + [f"new{i}" for i in range(1, 20, 2)])
    mp.wait_until(lambda: b.sd_names() == want, 5, what=f"B lists {want} after re-reading")
    assert b.sd_names() == a.sd_names() == c.sd_names()
    assert b.fetch("/web1/bytes/100") == (200, s.body(100))
    assert b.get("/gone1/metrics")[0] == 404
