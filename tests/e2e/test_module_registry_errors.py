"""An unreadable registry: every routed request answers 500, error.log names the registry path and the LMDB
error (rate-limited), and the workers pick the registry up once it exists, without a reload."""
import json
import os

import mp
import nginx_harness as h


def unreadable_lines(nginx):
    return [line for line in nginx.error_log().splitlines() if "unreadable" in line]


PAGES = ("        location = /-/metrics { tunnel_metrics; }\n        location = /-/status { tunnel_status; }\n"
         "        location = /-/sd { tunnel_sd; }")


def test_missing_registry_answers_500_then_recovers_without_reload(env):
    nginx = env.nginx(workers=1).start()  # env.registry.path does not exist yet
    workers = nginx.worker_pids()
    for _ in range(20):
        status, body, _ = nginx.get("/web1/metrics")
        assert (status, body) == (500, "tunnel registry unavailable\n")

    lines = unreadable_lines(nginx)
    assert lines, nginx.error_log()
    assert env.registry.path in lines[0]
    assert "No such file or directory" in lines[0]
    assert "[error]" in lines[0]
    assert len(lines) <= 2, lines  # 20 failing requests, one report (rate-limited)

    env.target("web1")
    mp.wait_until(lambda: nginx.status("/web1/metrics") == 200, timeout=10, what="registry picked up")
    assert nginx.worker_pids() == workers


def test_registry_the_workers_cannot_open_answers_500(env):
    env.target("web1")
    os.chmod(env.registry.path, 0o700)  # workers run as nobody:nogroup
    try:
        nginx = env.nginx(workers=1).start()
        assert nginx.get("/web1/metrics")[:2] == (500, "tunnel registry unavailable\n")
        lines = unreadable_lines(nginx)
        assert lines and env.registry.path in lines[0] and "Permission denied" in lines[0], nginx.error_log()
    finally:
        os.chmod(env.registry.path, 0o2750)
    mp.wait_until(lambda: nginx.status("/web1/metrics") == 200, timeout=10, what="registry readable again")


def test_registry_replaced_by_a_new_one_is_reopened(env):
    env.target("web1")
    nginx = env.nginx(workers=2).start()
    assert nginx.status("/web1/metrics") == 200

    old = env.registry.path + ".old"
    os.rename(env.registry.path, old)  # the workers still have the old files open
    env.target("web2")                 # a brand-new registry at the same path
    mp.wait_until(lambda: nginx.status("/web2/metrics") == 200 and nginx.status("/web1/metrics") == 404,
                  timeout=10, what="the new registry served")
    # Noticed by the inode check, or by a read failing while the new registry was being written (then the
    # worker reopened it a second later): either way it reopened, it did not keep serving the old files.
    log = nginx.error_log()
    assert "was replaced, reopening it" in log or log.count('tunnel registry "') > 2, log


def test_corrupt_registry_answers_500_and_names_the_lmdb_error(env):
    os.makedirs(env.registry.path)
    os.chmod(env.registry.path, 0o777)  # the workers may create lock.mdb: the data file is what is broken
    with open(os.path.join(env.registry.path, "data.mdb"), "wb") as f:
        f.write(b"not an lmdb file" * 512)
    os.chmod(os.path.join(env.registry.path, "data.mdb"), 0o644)
    nginx = env.nginx(workers=1).start()
    assert nginx.get("/web1/metrics")[:2] == (500, "tunnel registry unavailable\n")
    lines = unreadable_lines(nginx)
    assert lines and env.registry.path in lines[0], nginx.error_log()
    assert "MDB_INVALID" in lines[0] or "not an LMDB file" in lines[0], lines[0]


def test_one_undecodable_target_record_fails_that_target_only(env):
    """A record written by a newer version (or damaged) answers 500 for its own target, with a log line naming
    it; every other target keeps answering 200 at once: the worker keeps its reader."""
    import nginx_harness as h
    env.target("web1")
    env.target("web2")
    nginx = env.nginx(workers=1).start()
    assert nginx.status("/web1/metrics") == 200 and nginx.status("/web2/metrics") == 200
    h.run([mp.program("mp-registry-fixture"), "--registry", env.registry.path, "future", "web2"])
    mp.wait_until(lambda: nginx.status("/web2/metrics") == 500, timeout=10, what="web2 answers 500")
    statuses = [nginx.status("/web1/metrics") for _ in range(200)]
    assert statuses == [200] * 200, {s: statuses.count(s) for s in set(statuses)}
    log = nginx.error_log()
    assert 'the registry record of "web2" is unreadable' in log and "unknown record version" in log, log
    assert "reopening" not in log and "unreadable: " not in log.split('record of "web2"')[0], log


def test_an_undecodable_target_is_skipped_by_metrics_and_status_and_fails_discovery(env):
    """/-/metrics and /-/status show everything else and report the record; /-/sd answers 500, so Prometheus
    keeps its last good target list rather than dropping web2's series."""
    env.target("web1")
    env.target("web2")
    nginx = env.nginx(workers=1, server_extra=PAGES).start()
    h.run([mp.program("mp-registry-fixture"), "--registry", env.registry.path, "future", "web2"])
    status, metrics, _ = nginx.get("/-/metrics")
    assert status == 200 and "monitoring_proxy_registry_unreadable_records 1\n" in metrics, metrics
    assert 'monitoring_proxy_tunnel_up{tunnel="web1"} 1\n' in metrics and 'tunnel="web2"' not in metrics
    page = json.loads(nginx.get("/-/status?format=json")[1])
    assert [(u["kind"], u["name"]) for u in page["unreadable"]] == [("target", "web2")]
    assert [t["name"] for t in page["targets"] if t["declared"]] == ["web1"]
    assert nginx.status("/-/sd") == 500
    assert nginx.status("/web1/metrics") == 200
    log = nginx.error_log()
    assert 'the registry record of target "web2" is unreadable: ' in log and "skipped" in log, log
