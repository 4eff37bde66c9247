"""Cluster mode against hostile etcd contents: values written under the cluster prefix with etcdctl that are not
what the cluster schema says (garbage in a key shaped like a target's or a tunnel's, keys no schema version
defines, an oversized value, a name that is no target name) are logged errors naming the key at fault. No proxy
crashes, no target is lost, and the mirror goes on applying the changes that follow."""
import pytest

import cluster_harness
import mp
import ssh_harness as s

SUPPORTED, WHY = cluster_harness.cluster_support()
if not SUPPORTED:
    pytest.skip(WHY, allow_module_level=True)

PREFIX = cluster_harness.PREFIX


@pytest.fixture
def web1(cluster, workdir, exporter):
    """web1, declared and bound, its host connected to A and routable everywhere; the etcd keys that mention it."""
    a = cluster[0]
    key = s.keygen(workdir, "web1")
    a.tunnelctl("add", "web1", "--key-file", key + ".pub", "--label", "env=prod")
    cluster.ssh(a, key, "web1", exporter.port)
    a.wait_forward("web1")
    for p in cluster.proxies:
        mp.wait_until(lambda: p.fetch("/web1/bytes/100") == (200, s.body(100)), 2, what=f"web1 via {p.node_id}")
    keys = [k for k in cluster.etcd.get_prefix(PREFIX) if "web1" in k]
    assert keys, cluster.etcd.get_prefix(PREFIX)
    return keys


def assert_unharmed(cluster, names=("web1",)):
    for p in cluster.proxies:
        assert p.tunneld.proc.poll() is None, f"{p.node_id}'s tunneld died:\n{p.log()[-3000:]}"
        assert p.fetch("/web1/bytes/100") == (200, s.body(100)), p.node_id
        assert p.sd_names() == sorted(names), p.node_id
        assert p.node_of("web1") == cluster[0].node_id


def assert_logged_by_everyone(cluster, key):
    for p in cluster.proxies:
        mp.wait_until(lambda: p.log_lines(key), 5, what=f"{p.node_id} logs the bad key {key}")


def test_garbage_beside_a_target_is_logged_and_ignored(cluster, web1):
    etcd = cluster.etcd
    bad = {}
    for k in web1:  # the same shapes as web1's keys, for a name nobody declared
        bad[k.replace("web1", "bad1")] = b"\x00\xff{not what the schema says"
    bad[PREFIX + "no-such-kind/x"] = "foreign"
    bad[PREFIX + "zz-from-the-future/v99/web1"] = '{"version":99}'
    for k in web1:
        bad[k.replace("web1", "Not..A.Name")] = "x"
    big = next(iter(web1)).replace("web1", "big1")
    for k, v in bad.items():
        etcd.put(k, v)
    etcd.put(big, "y" * 100000)  # far beyond any record, below the argument size limit
    for k in bad:
        if "no-such-kind" not in k:  # a key no schema defines may be ignored silently or logged; never fatal
            assert_logged_by_everyone(cluster, k)
    assert_unharmed(cluster)
    # The mirror goes on: a change after the garbage reaches every proxy within a second.
    cluster[1].tunnelctl("add", "web2")
    for p in cluster.proxies:
        mp.wait_until(lambda: "web2" in p.sd_names(), 1.0, what=f"web2 on {p.node_id} after the garbage")
    # A proxy starting now reads the garbage in its first list (not a watch event): it starts and serves.
    b = cluster[1]
    b.tunneld.stop()
    b.start()
    assert_unharmed(cluster, names=("web1", "web2"))


def test_a_corrupt_value_of_a_declared_target_loses_nothing(cluster, web1):
    """web1's own declared-target value overwritten with garbage: every proxy keeps what it last knew of web1
    (listed, routed, labels kept) and logs the key; a valid value written later is applied."""
    etcd = cluster.etcd
    before = [p.sd()[1] for p in cluster.proxies]
    # The declared target's key, not the live tunnel's (the schema's key names say which).
    declared = [k for k in web1 if "target" in k and "tunnel" not in k] or \
        [k for k in web1 if cluster[0].node_id not in k] or web1
    good = {k: etcd.get_bytes(k) for k in declared}
    for k in declared:
        etcd.put(k, "garbage")
    for k in declared:
        assert_logged_by_everyone(cluster, k)
    assert_unharmed(cluster)
    assert [p.sd()[1] for p in cluster.proxies] == before
    for k in declared:
        etcd.put(k, good[k])
    cluster[2].tunnelctl("label", "web1", "team=ops")
    for p in cluster.proxies:
        mp.wait_until(lambda: [g["labels"].get("team") for g in p.sd()[0]] == ["ops"], 2,
                      what=f"web1's new label on {p.node_id}")
