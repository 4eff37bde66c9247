"""ngx_http_tunnel_module routes /<name>/... per registry contents, with no reload, and answers every other
outcome itself, before any connection."""
import mp
import nginx_harness as h


def test_target_added_while_running_is_served_without_reload(env):
    env.target("web1")
    nginx = env.nginx().start()
    workers = nginx.worker_pids()

    assert nginx.get("/web1/metrics") [:2] == (200, "web1 /metrics\n")
    assert nginx.get("/web2/metrics")[:2] == (404, 'unknown target "web2"\n')

    web2 = env.target("web2")  # declared and connected while nginx runs
    assert nginx.get("/web2/metrics")[:2] == (200, "web2 /metrics\n")
    assert len(web2.requests) == 1
    assert nginx.worker_pids() == workers  # no reload happened


def test_removed_tunnel_and_removed_target_stop_being_served_at_once(env):
    web1 = env.target("web1")
    nginx = env.nginx().start()
    assert nginx.status("/web1/metrics") == 200

    env.registry.gone("web1")
    assert nginx.get("/web1/metrics")[:2] == (503, 'target "web1" is not connected\n')
    env.registry.remove("web1")
    assert nginx.get("/web1/metrics")[:2] == (404, 'unknown target "web1"\n')
    assert len(web1.requests) == 1


def test_path_query_and_escaping_reach_the_target(env):
    web1 = env.target("web1")
    nginx = env.nginx().start()
    assert nginx.get("/web1")[:2] == (200, "web1 /\n")
    assert nginx.get("/web1/")[:2] == (200, "web1 /\n")
    assert nginx.get("/web1/metrics?name[]=up&x=1")[1] == "web1 /metrics?name[]=up&x=1\n"
    assert nginx.get("/web1/a%20b/c%3Fd")[1] == "web1 /a%20b/c%3Fd\n"
    # nginx normalises the path before the name and prefixes are checked; the target gets that same path
    assert nginx.get("/web1/x/../metrics")[1] == "web1 /metrics\n"
    assert [r["path"] for r in web1.requests][-1] == "/metrics"


def test_not_connected_target_gets_503_without_any_connection(env):
    env.registry.add("web1", "--port", str(mp.free_port()))
    nginx = env.nginx().start()
    status, body, headers = nginx.get("/web1/metrics")
    assert (status, body) == (503, 'target "web1" is not connected\n')
    assert headers["Content-Type"] == "text/plain"
    assert "connect() failed" not in nginx.error_log()


def test_invalid_names_get_400_with_the_rule(env):
    env.target("web1")
    nginx = env.nginx().start()
    for path in ("/Web1/metrics", "/-x/metrics", "/a%22b/metrics", "/" + "a" * 64 + "/metrics", "/"):
        status, body, _ = nginx.get(path)
        assert status == 400, path
        assert body.startswith("invalid target name "), body
        assert "[a-z0-9][a-z0-9._-]{0,62}" in body
    assert '"a?b"' in nginx.get("/a%22b/x")[1]  # echoed names cannot break out of their quotes


def test_path_outside_allowed_prefixes_gets_403(env):
    web1 = env.target("web1", "--path", "/metrics")
    nginx = env.nginx().start()
    assert nginx.status("/web1/metrics") == 200
    assert nginx.status("/web1/metrics/sub") == 200
    assert nginx.get("/web1/debug/pprof")[:2] == (403, 'path not allowed for target "web1"\n')
    assert nginx.status("/web1/x/../../web1/debug") == 403  # normalised before the check
    assert len(web1.requests) == 2


def test_refused_connection_gets_502(env):
    env.registry.add("web1")
    env.registry.live("web1", mp.free_port())  # nothing listens there
    nginx = env.nginx().start()
    assert nginx.status("/web1/metrics") == 502


def test_own_answers_keep_the_client_connection(env):
    env.target("web1")
    nginx = env.nginx().start()
    conn = h.http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    try:
        statuses = [nginx.get(p, conn=conn)[0] for p in ("/nope/x", "/BAD/x", "/web1/metrics", "/nope/y")]
        assert statuses == [404, 400, 200, 404]
    finally:
        conn.close()


def test_error_page_for_500_does_not_hide_our_answers(env):
    env.target("web1")
    nginx = env.nginx(server_extra="        error_page 500 502 503 504 /50x.html;\n"
                                   "        location = /50x.html { return 200 'generic error page'; }").start()
    assert nginx.get("/nope/metrics")[:2] == (404, 'unknown target "nope"\n')
    assert nginx.status("/web1/metrics") == 200


def test_head_requests_get_our_status_without_a_body(env):
    env.target("web1")
    nginx = env.nginx().start()
    conn = h.http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    try:
        conn.request("HEAD", "/nope/metrics")
        resp = conn.getresponse()
        assert resp.status == 404 and resp.read() == b""
        assert resp.getheader("Content-Length") == str(len('unknown target "nope"\n'))
        conn.request("GET", "/web1/metrics")  # the connection is still usable
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_hostile_paths_get_clear_answers_and_crash_nothing(env):
    env.target("web1")
    nginx = env.nginx(workers=1).start()
    workers = nginx.worker_pids()
    paths = ["/%ff%fe/x", "/%2e%2e/x", "/..", "/web1/../../etc/passwd", "/a" * 3000, "/" + "x" * 5000 + "/m",
             "/WEB1/metrics", "/web1%00/x", "/%20/x", "/web1./x", "/.web1/x", "/_x/m"]
    for path in paths:
        status, body, _ = nginx.get(path)
        assert status in (400, 404), (path, status, body)
    assert nginx.worker_pids() == workers  # no worker died
    assert nginx.status("/web1/metrics") == 200
    assert nginx.get("/web1%2fmetrics")[1] == "web1 /metrics\n"  # decoded like every path, then split


def test_variables_name_the_target_and_the_forwarded_path(env):
    env.target("web1")
    nginx = env.nginx(http_extra="    log_format tunnel '$tunnel_name|$tunnel_uri|$status';\n"
                                 "    access_log logs/tunnel.log tunnel;").start()
    nginx.get("/web1/metrics")
    nginx.get("/nope/a%20b")
    nginx.get("/web1")
    path = h.os.path.join(nginx.prefix, "logs", "tunnel.log")
    lines = mp.wait_until(lambda: open(path).read().split(), timeout=10, what="access log lines")
    mp.wait_until(lambda: len(open(path).read().split()) == 3, timeout=10, what="three access log lines")
    assert open(path).read().split() == ["web1|/metrics|200", "nope|/a%20b|404", "web1|/|200"], lines
