"""The tunnel balancer as an nginx upstream: keepalive to tunnels, the Prometheus scrape timeout, several
workers, reloads under load, and the configuration mistakes it refuses."""
import threading
import time

import pytest

import nginx_harness as h


def test_keepalive_reuses_one_connection_to_the_tunnel(env):
    web1 = env.target("web1")
    nginx = env.nginx(workers=1).start()
    for i in range(6):  # separate client connections, one upstream connection
        assert nginx.get(f"/web1/metrics?i={i}")[0] == 200
    assert len(web1.requests) == 6
    assert len(web1.connections) == 1, web1.connections


@pytest.mark.parametrize("upstream_body,messages", [
    # keepalive first: nginx would silently disable it once `tunnel` replaced the balancer
    ("        keepalive 16;\n        tunnel;", ['"tunnel" directive must be the first directive of its kind',
                                               '"keepalive" before "tunnel" would be silently disabled']),
    ("        tunnel;\n        hash $uri;", ['a balancing directive after "tunnel" replaced it']),
    ("        server 127.0.0.1:1;\n        tunnel;", ['remove its "server" lines']),
], ids=["keepalive-before-tunnel", "balancer-after-tunnel", "server-lines"])
def test_upstream_blocks_that_would_misroute_are_refused(env, upstream_body, messages):
    env.registry.add("web1")
    status, output = env.nginx(upstream_body=upstream_body).config_test()
    assert status != 0
    for message in messages:
        assert message in output


def test_tunnel_key_routes_by_another_value(env):
    env.target("web1")
    nginx = env.nginx(upstream_body="        tunnel;\n        tunnel_key $http_x_target;").start()
    # With tunnel_key the whole path belongs to the target: proxy_pass still forwards $tunnel_uri here, but the
    # name comes from the header.
    assert nginx.get("/anything/metrics", headers={"X-Target": "web1"})[:2] == (200, "web1 /metrics\n")
    assert nginx.get("/web1/metrics", headers={"X-Target": "nope"})[:2] == (404, 'unknown target "nope"\n')


def test_scrape_timeout_header_gives_504_before_prometheus_gives_up(env):
    env.target("slow")
    nginx = env.nginx(read_timeout="30s").start()
    assert nginx.status("/slow/metrics?delay=0.1", headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"}) == 200

    started = time.monotonic()
    status = nginx.status("/slow/metrics?delay=20", headers={"X-Prometheus-Scrape-Timeout-Seconds": "4"})
    elapsed = time.monotonic() - started
    assert status == 504
    assert 3.0 <= elapsed < 4.0, elapsed  # 4 s minus the 500 ms margin: before Prometheus gives up at 4 s

    # A malformed header is ignored: the configured timeout applies.
    assert nginx.status("/slow/metrics?delay=0.1", headers={"X-Prometheus-Scrape-Timeout-Seconds": "banana"}) == 200


def test_configured_read_timeout_caps_the_header(env):
    env.target("slow")
    nginx = env.nginx(read_timeout="1s").start()
    started = time.monotonic()
    status = nginx.status("/slow/metrics?delay=20", headers={"X-Prometheus-Scrape-Timeout-Seconds": "60"})
    assert status == 504
    # Capped at 1 s, not the header's 60 s nor the exporter's 20 s delay; 10 s of slack for 2 shared cores.
    assert time.monotonic() - started < 10


def _hammer(nginx, paths, results, stop, limit):
    """Bounded request loop: at most `limit` requests, each on a new connection, until `stop` is set."""
    for i in range(limit):
        if stop.is_set():
            return
        try:
            results.append(nginx.status(paths[i % len(paths)], timeout=10))
        except Exception as exc:  # a failed request is a result, not a crash of the loop
            results.append(repr(exc))


def test_two_workers_both_serve_from_the_registry(env):
    env.target("web1")
    env.target("web2")
    nginx = env.nginx(workers=2).start()
    assert len(nginx.worker_pids()) == 2
    results, stop = [], threading.Event()
    threads = [threading.Thread(target=_hammer, args=(nginx, ["/web1/m", "/web2/m", "/nope/m"], results, stop, 60))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 240
    assert results.count(200) == 160 and results.count(404) == 80, results
    opened = {line.split("#")[0].split()[-1] for line in nginx.error_log().splitlines()
              if "tunnel registry" in line and "opened" in line}
    assert len(opened) == 2  # each worker opened the registry itself


def test_reload_under_load_fails_no_request(env):
    env.target("web1")
    nginx = env.nginx(workers=2).start()
    results, stop = [], threading.Event()
    threads = [threading.Thread(target=_hammer, args=(nginx, ["/web1/metrics"], results, stop, 2000))
               for _ in range(3)]
    for t in threads:
        t.start()
    try:
        h.mp.wait_until(lambda: len(results) >= 30, timeout=30, what="requests before reload")
        assert h.readers(env.registry.path), "workers hold reader slots"
        for _ in range(3):
            nginx.reload()
        before = len(results)
        h.mp.wait_until(lambda: len(results) >= before + 30, timeout=30, what="requests after reload")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    failures = [r for r in results if r != 200]
    assert not failures, failures[:10]
    assert len(results) >= 60
    # Old workers closed their environments: reader slots belong to live workers only.
    workers = set(nginx.worker_pids())
    h.mp.wait_until(lambda: h.readers(env.registry.path) <= workers, timeout=15,
                    what="no reader slots of exited workers")


def test_binary_upgrade_under_load_fails_no_request(env):
    env.target("web1")
    nginx = env.nginx(workers=2, daemon=True).start()  # USR2 is ignored by a master started with daemon off
    results, stop = [], threading.Event()
    threads = [threading.Thread(target=_hammer, args=(nginx, ["/web1/metrics"], results, stop, 2000))
               for _ in range(3)]
    for t in threads:
        t.start()
    try:
        h.mp.wait_until(lambda: len(results) >= 30, timeout=30, what="requests before the upgrade")
        old, new = nginx.binary_upgrade()
        before = len(results)
        h.mp.wait_until(lambda: len(results) >= before + 30, timeout=30, what="requests after the upgrade")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    failures = [r for r in results if r != 200]
    assert not failures, failures[:10]
    workers = set(nginx.worker_pids())
    assert workers
    h.mp.wait_until(lambda: h.readers(env.registry.path) <= workers, timeout=15,
                    what="reader slots of the new master's workers only")
