"""The etcd harness the cluster tests stand on, and the operator configuration it starts every member from
(docker/etcd/etcd.conf.yml): a real 3-member etcd 3.4 cluster with auto-compaction on, surviving the loss of one
member, and losing quorum (not data) when all stop."""
import json


def test_three_members_agree_and_compaction_is_on(etcd):
    etcd.etcdctl("put", "/mp-test/a", "1", endpoints=etcd.members[0].client_url)
    got = etcd.etcdctl("get", "/mp-test/a", "--print-value-only", endpoints=etcd.members[2].client_url)
    assert got.stdout.strip() == "1"
    members = json.loads(etcd.etcdctl("member", "list", "-w", "json").stdout)["members"]
    assert sorted(m["name"] for m in members) == ["etcd0", "etcd1", "etcd2"]
    # The shipped configuration's compaction and quota are what every member runs with (zap logs its config).
    for m in etcd.members:
        log = etcd.log(m)
        assert '"auto-compaction-mode":"periodic"' in log, log[-2000:]
        assert '"auto-compaction-retention":"1h0m0s"' in log
        assert '"quota-size-bytes":2147483648' in log


def test_one_member_killed_keeps_quorum_and_rejoins(etcd):
    killed = etcd.kill(1)
    assert not killed.running()
    etcd.put("/mp-test/during", "x")
    assert all(m.healthy() for m in etcd.members if m.running())
    etcd.restart(1)
    got = etcd.etcdctl("get", "/mp-test/during", "--print-value-only",
                       endpoints=killed.client_url)
    assert got.stdout.strip() == "x"


def test_all_stopped_then_back_keeps_the_data(etcd):
    etcd.put("/mp-test/kept", "y")
    etcd.put("/mp-test/raw", b"\x00\xff raw")
    assert etcd.get_bytes("/mp-test/raw") == b"\x00\xff raw"
    etcd.etcdctl("del", "/mp-test/raw")
    etcd.stop_all()
    assert not any(m.healthy() for m in etcd.members)
    etcd.start_all_stopped()
    assert etcd.get_prefix("/mp-test/") == {"/mp-test/kept": "y"}
    rev = etcd.compact()
    assert rev >= 2
