"""The proxy's own pages served by the real nginx with the module: discovery (what Prometheus reads), metrics
(checked by promtool) and the status page (rendered by headless Chromium, screenshot kept as an artifact)."""
import json
import os
import subprocess

import pytest

import mp

PAGES = """
        location = /-/sd { tunnel_sd; }
        location = /-/sd-fixed { tunnel_sd proxy.example:80; }
        location = /-/metrics { tunnel_metrics; }
        location = /-/status { tunnel_status; }
"""
ARTIFACTS = os.path.join(mp.BUILD_DIR, "tests", "artifacts")


@pytest.fixture
def stack(env):
    env.target("web1", "--label", "env=prod")
    env.registry.add("db", "--label", "env=staging", "--metrics-path", "/probe")
    nginx = env.nginx(server_extra=PAGES).start()
    assert nginx.status("/web1/metrics") == 200
    return nginx


def test_discovery_lists_every_declared_target(stack):
    status, body, headers = stack.get("/-/sd")
    assert status == 200 and headers["Content-Type"] == "application/json"
    groups = {g["labels"]["tunnel"]: g for g in json.loads(body)}
    assert set(groups) == {"web1", "db"}  # db is not connected, and still listed so that up == 0 alerts
    assert groups["web1"]["targets"] == [f"127.0.0.1:{stack.port}"]
    assert groups["web1"]["labels"] == {"__metrics_path__": "/web1/metrics", "tunnel": "web1", "instance": "web1",
                                        "env": "prod"}
    assert groups["db"]["labels"]["__metrics_path__"] == "/db/probe"
    fixed = json.loads(stack.get("/-/sd-fixed")[1])
    assert {g["targets"][0] for g in fixed} == {"proxy.example:80"}
    assert [g["labels"]["tunnel"] for g in json.loads(stack.get("/-/sd?label=env=staging")[1])] == ["db"]
    assert stack.get("/-/sd?label=bad")[0] == 400


def test_discovery_of_an_empty_registry_is_an_empty_list(env):
    env.registry.tunnelctl("init")
    nginx = env.nginx(server_extra=PAGES).start()
    status, body, _ = nginx.get("/-/sd")
    assert status == 200 and json.loads(body) == []


def test_metrics_pass_promtool_and_follow_requests(stack):
    for _ in range(3):
        stack.get("/web1/metrics")
    stack.get("/db/probe")
    status, text, headers = stack.get("/-/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert mp.metric_value(text, "monitoring_proxy_tunnel_up", tunnel="web1") == 1
    assert mp.metric_value(text, "monitoring_proxy_tunnel_up", tunnel="db") == 0
    assert mp.metric_value(text, "monitoring_proxy_tunnel_responses_total", tunnel="web1", code="2xx") == 4
    assert mp.metric_value(text, "monitoring_proxy_requests_total", outcome="not_connected") == 1
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_status_json_puts_problems_first(stack):
    for path in ("/-/status?format=json", "/-/status"):
        headers = {"Accept": "application/json"} if path == "/-/status" else {}
        status, body, _ = stack.get(path, headers=headers)
        assert status == 200
        rows = json.loads(body)["targets"]
        assert [r["name"] for r in rows] == ["db", "web1"]
        assert rows[0]["problem"].startswith("no live tunnel") and rows[1]["state"] == "connected"
        assert rows[1]["last_scrape"]["status"] == 200


def test_status_page_renders_in_a_browser(stack, workdir):
    url = f"http://127.0.0.1:{stack.port}/-/status"
    os.makedirs(ARTIFACTS, exist_ok=True)
    screenshot = os.path.join(ARTIFACTS, "status-page.png")
    if os.path.exists(screenshot):
        os.remove(screenshot)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={os.path.join(workdir, 'chromium')}", "--window-size=1280,600"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = [line for line in dom.stdout.splitlines() if "data-target=" in line]
    assert len(rows) == 2 and 'data-target="db"' in rows[0] and 'class="problem"' in rows[0]
    assert 'data-target="web1"' in rows[1] and "connected" in rows[1]
    shot = subprocess.run(["chromium", *flags, f"--screenshot={screenshot}", url], capture_output=True, text=True,
                          timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    with open(screenshot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
