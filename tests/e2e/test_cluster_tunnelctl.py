"""tunnelctl --etcd against a real etcd 3.4 started here: the cluster's declared targets live in etcd, each
command is one etcd transaction, and ls names the node holding a tunnel (as tunneld publishes it)."""
import json
import os
import subprocess

import pytest

import mp

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/etcd"), reason="etcd-server is not installed")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl web1"


@pytest.fixture
def etcd(workdir, procs):
    client, peer = mp.free_port(), mp.free_port()
    url = f"http://127.0.0.1:{client}"
    p = procs.start(["etcd", "--name", "t", "--data-dir", os.path.join(workdir, "etcd"),
                     "--listen-client-urls", url, "--advertise-client-urls", url,
                     "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                     "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                     "--initial-cluster", f"t=http://127.0.0.1:{peer}", "--log-level", "error", "--logger", "zap"])
    mp.wait_until(lambda: etcdctl(url, "endpoint", "health").returncode == 0, timeout=20, what="etcd up")
    yield url
    procs.stop(p)


def etcdctl(url, *args, **kw):
    return subprocess.run(["etcdctl", f"--endpoints={url}", *args], capture_output=True,
                          env={**os.environ, "ETCDCTL_API": "3"}, **kw)


def ctl(url, *args, check=0, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MONITORING_PROXY")}
    e.update(env or {})
    p = subprocess.run([mp.program("tunnelctl"), *(["--etcd", url] if url else []), *args],
                       capture_output=True, text=True, env=e)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def keys(url, prefix="/monitoring-proxy/"):
    out = etcdctl(url, "get", "--prefix", "--keys-only", prefix).stdout.decode().split()
    return sorted(out)


def test_add_label_key_rm_live_in_etcd(etcd, workdir):
    ctl(etcd, "add", "web1", "--port", "20001", "--label", "env=prod")
    ctl(etcd, "add", "web2")
    assert keys(etcd) == ["/monitoring-proxy/v1/targets/web1", "/monitoring-proxy/v1/targets/web2"]
    # Every check of the single-node commands holds on the cluster: duplicate names and ports are refused.
    assert "already exists" in ctl(etcd, "add", "web1", check=2).stderr
    assert "already the port" in ctl(etcd, "add", "web3", "--port", "20001", check=2).stderr
    ctl(etcd, "label", "web2", "role=db")
    ctl(etcd, "key", "add", "web2", KEY)
    listed = json.loads(ctl(etcd, "ls", "--json").stdout)
    assert [t["name"] for t in listed] == ["web1", "web2"]
    assert listed[1]["labels"] == {"role": "db"} and listed[1]["node"] is None
    shown = ctl(etcd, "show", "web2", "--json").stdout
    assert "SHA256:" in shown
    ctl(etcd, "rm", "web1")
    assert keys(etcd) == ["/monitoring-proxy/v1/targets/web2"]
    assert "unknown target" in ctl(etcd, "rm", "web1", check=2).stderr
    # No local registry was created by any of it.
    assert not os.path.exists(os.path.join(workdir, "registry"))
    # $MONITORING_PROXY_ETCD is --etcd; --etcd-prefix keeps clusters apart.
    ctl(None, "--etcd-prefix", "/other", "add", "x1", env={"MONITORING_PROXY_ETCD": etcd})
    assert keys(etcd, "/other/") == ["/other/v1/targets/x1"]


def test_import_targets_is_one_transaction(etcd, workdir):
    path = os.path.join(workdir, "targets")
    with open(path, "w") as f:
        f.write("localhost:20001 web1\nlocalhost:20002 web2\nlocalhost:20003 web3\n")
    before = json.loads(etcdctl(etcd, "get", "/", "-w", "json").stdout)["header"]["revision"]
    ctl(etcd, "import-targets", path)
    after = json.loads(etcdctl(etcd, "get", "/", "-w", "json").stdout)["header"]["revision"]
    assert after == before + 1  # three keys, one revision: one transaction
    assert len(keys(etcd)) == 3


def targets_file(workdir, count):
    path = os.path.join(workdir, f"targets-{count}")
    with open(path, "w") as f:
        f.write("".join(f"localhost:{20001 + i} web{i}\n" for i in range(count)))
    return path


def test_import_larger_than_etcds_default_transaction_limit_is_refused_whole_and_says_why(etcd, workdir):
    """This etcd runs with etcd's own defaults (max-txn-ops 128): 300 targets are refused in one piece, with the
    limit named, nothing written and nothing claimed on stdout."""
    p = ctl(etcd, "import-targets", targets_file(workdir, 300), check=2)
    assert "one transaction of 300 operations" in p.stderr and "max-txn-ops" in p.stderr, p.stderr
    assert "nothing was written" in p.stderr and p.stdout == "", (p.stdout, p.stderr)
    assert keys(etcd) == []


def test_import_of_300_targets_is_one_transaction_with_the_shipped_etcd_config(workdir, procs):
    import etcd_harness
    cluster = etcd_harness.EtcdCluster(procs, workdir, size=1).start()
    try:
        url = cluster.endpoints
        before = json.loads(etcdctl(url, "get", "/", "-w", "json").stdout)["header"]["revision"]
        p = ctl(url, "import-targets", targets_file(workdir, 300))
        assert "300" in p.stdout, p.stdout
        after = json.loads(etcdctl(url, "get", "/", "-w", "json").stdout)["header"]["revision"]
        assert after == before + 1 and len(keys(url)) == 300
    finally:
        cluster.stop_all()


def test_ls_shows_the_holding_node_and_survives_a_foreign_value(etcd):
    ctl(etcd, "add", "web1")
    # A tunnel key as tunneld writes it is binary; a foreign value under the prefix is skipped with its key named.
    etcdctl(etcd, "put", "/monitoring-proxy/v1/targets/junk", "not a record", check=True)
    p = ctl(etcd, "ls")
    assert "/monitoring-proxy/v1/targets/junk" in p.stderr
    assert "web1" in p.stdout and "junk" not in p.stdout


def test_per_node_commands_refuse_etcd_and_no_etcd_is_single_node(etcd, workdir):
    for cmd in (["invite", "web1"], ["counters"], ["init"], ["migrate"]):
        p = ctl(etcd, *cmd, check=1)
        assert "without --etcd" in p.stderr
    p = ctl("http://127.0.0.1:1", "ls", check=3)
    assert "no endpoint answered" in p.stderr and "127.0.0.1:1" in p.stderr
    assert "expected http://HOST:PORT" in ctl("127.0.0.1:2379", "ls", check=3).stderr
