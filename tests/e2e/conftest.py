import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import mp  # noqa: E402
import nginx_harness  # noqa: E402
import ssh_harness  # noqa: E402
import etcd_harness  # noqa: E402
import cluster_harness  # noqa: E402


def pytest_sessionstart(session):
    # The tests address loopback as 127.0.0.1, but the original image's documented commands (and ssh -R specs
    # copied from them) say localhost: on a system without /etc/hosts those would fail as timeouts, with no hint.
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo("localhost", None)}
    except socket.gaierror as err:
        pytest.exit(f"'localhost' does not resolve ({err}): add '127.0.0.1 localhost' to /etc/hosts", returncode=4)
    if not addresses & {"127.0.0.1", "::1"}:
        pytest.exit(f"'localhost' resolves to {sorted(addresses)}, not loopback: fix /etc/hosts", returncode=4)


@pytest.fixture
def workdir():
    d = mp.make_workdir()
    yield d
    mp.remove_workdir(d)


@pytest.fixture
def procs(workdir):
    p = mp.Processes(workdir)
    yield p
    p.stop_all()


@pytest.fixture
def env(workdir, procs):
    """nginx with the module, a registry and backends (nginx_harness.Env); nginx's log is checked at the end."""
    e = nginx_harness.Env(workdir, procs)
    yield e
    e.close()


@pytest.fixture
def exporter():
    """An in-process HTTP exporter on a free loopback port (ssh_harness.Exporter): GET /bytes/N."""
    e = ssh_harness.Exporter()
    yield e
    e.close()


@pytest.fixture
def etcd(workdir, procs):
    """A real 3-member etcd 3.4 cluster on free loopback ports, started from docker/etcd/etcd.conf.yml
    (etcd_harness.EtcdCluster); its members are stopped by pid at the end."""
    cluster = etcd_harness.EtcdCluster(procs, workdir, size=3).start()
    yield cluster
    cluster.stop_all()


@pytest.fixture
def cluster(workdir, procs, etcd, monkeypatch):
    """Three proxies (tunneld --etcd + nginx each, own registry) on the `etcd` cluster (cluster_harness.Cluster),
    started; nginx's logs are checked for [alert]/[emerg] at the end."""
    monkeypatch.setenv("MONITORING_PROXY_REGISTRY_GROUP", nginx_harness.REGISTRY_GROUP)  # nginx workers read it
    c = cluster_harness.Cluster(procs, workdir, etcd).start()
    yield c
    c.stop()
    c.assert_clean_logs()


@pytest.fixture(autouse=True)
def single_node_without_etcd(request, monkeypatch):
    """Single-node tests run with no etcd at all: no $MONITORING_PROXY_ETCD reaches their programs (it would turn
    them into cluster nodes), and none of them leaves an etcd process behind."""
    if "etcd" in request.fixturenames:
        yield
        return
    monkeypatch.delenv("MONITORING_PROXY_ETCD", raising=False)
    yield
    leftover = etcd_harness.etcd_processes_below(os.getpid())
    assert not leftover, f"a single-node test left etcd processes running: {leftover}"
