"""Per-target counters in shared memory: every outcome counted once, whichever worker served it, only declared
targets get their own entry, and the counters survive a reload."""
import json

import mp

COUNTERS_LOCATION = "        location = /-/counters { tunnel_counters; }"


def counters(nginx):
    status, body, headers = nginx.get("/-/counters")
    assert status == 200 and headers["Content-Type"] == "application/json"
    return json.loads(body)


def test_every_outcome_is_counted_per_target_and_in_total(env):
    env.target("web1", "--path", "/metrics")
    env.target("slow")
    env.registry.add("web2")
    env.registry.add("refused")
    env.registry.live("refused", mp.free_port())
    nginx = env.nginx(workers=2, server_extra=COUNTERS_LOCATION).start()

    expected = [("/web1/metrics", 200)] * 3 + [
        ("/web1/debug", 403), ("/web2/metrics", 503), ("/nope/metrics", 404), ("/BAD/metrics", 400),
        ("/refused/metrics", 502)]
    for path, status in expected:
        assert nginx.status(path) == status, path
    assert nginx.status("/slow/metrics?delay=10", headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.4"}) == 504

    total = len(expected) + 1
    c = mp.wait_until(lambda: (lambda c: c if c["totals"]["requests"] == total else None)(counters(nginx)),
                      timeout=10, what="all requests counted")
    assert set(c["targets"]) == {"web1", "web2", "refused", "slow"}  # no entry for unknown or invalid names
    web1 = c["targets"]["web1"]
    assert web1["requests"] == 4
    assert web1["responses"]["2xx"] == 3 and web1["responses"]["4xx"] == 1
    assert web1["outcomes"]["proxied"] == 3 and web1["outcomes"]["path_forbidden"] == 1
    assert web1["last"]["status"] == 403 and web1["last"]["unix_ms"] > 0
    assert 0 < web1["bytes_sent"] < 4 * 1000  # per request, not the connection's running total
    assert c["targets"]["web2"]["outcomes"]["not_connected"] == 1
    assert c["targets"]["refused"]["outcomes"]["upstream_failed"] == 1
    slow = c["targets"]["slow"]
    assert slow["outcomes"]["upstream_timeout"] == 1 and slow["last"]["status"] == 504
    # cut by the header's 0.4 s, not the exporter's 10 s delay; the rest of the range is slack for 2 shared cores
    assert 200 <= slow["last"]["duration_ms"] < 9000
    totals = c["totals"]["outcomes"]
    assert totals["unknown_target"] == 1 and totals["invalid_name"] == 1 and totals["proxied"] == 3
    assert c["dropped_targets"] == 0


def test_counters_survive_a_reload(env):
    env.target("web1")
    nginx = env.nginx(workers=2, server_extra=COUNTERS_LOCATION).start()
    for _ in range(5):
        assert nginx.status("/web1/metrics") == 200
    mp.wait_until(lambda: counters(nginx)["targets"].get("web1", {}).get("requests") == 5, timeout=10,
                  what="5 requests counted")
    nginx.reload()
    assert nginx.status("/web1/metrics") == 200
    mp.wait_until(lambda: counters(nginx)["targets"]["web1"]["requests"] == 6, timeout=10,
                  what="counting continues after reload")
