"""One procedure per row of the benchmark table (tests/bench/README.md). Each returns result rows {"name", "ours", "baseline", "ratio",
"unit", ...}; "ours" is None when tunneld or the module is not built (or failed to come up), never an exception.
Both sides of a comparison run in the same repetition loop, alternating which goes first."""
import heapq
import http.client
import os
import subprocess
import threading
import time

from . import measure
from . import stack as stk


def make_row(row, name, unit, vs, goal, ours, baseline, reps):
    r = {"name": name, **measure.paired(ours, baseline), "unit": unit, "row": row, "vs": vs, "goal": goal,
         "reps": reps}
    return {k: r[k] for k in ("name", "ours", "baseline", "ratio", "unit", "spread", "vs", "goal", "reps", "row")}


def alternate(rep, items):
    """Run order of one repetition: reversed every other repetition, so drift hits both sides alike."""
    return list(items) if rep % 2 == 0 else list(reversed(items))


# -- row 1: scrapes through the whole stack ------------------------------------------------------------------------
def interleaved_wrk(ctx, urls, conc, label, headers=()):
    """{side: [wrk result per repetition]} for every side in `urls`, repetitions interleaved."""
    res = {s: [] for s in ("ours", "original", "direct")}
    for rep in range(ctx.cfg.reps):
        for system in alternate(rep, list(urls)):
            r = measure.wrk(urls[system], conc, ctx.cfg.wrk_seconds, ctx.workdir, headers)
            if r["errors"]:
                # Error answers are fast: timing them would compare a broken side, not the systems.
                ctx.note(f"{label} {system} c{conc}: {r['errors']} errors of {r['requests']} ({urls[system]}), "
                         "not counted as a measurement")
                r = dict(r, rps=None, p50_ms=None, p99_ms=None)
            res[system].append(r)
    return res


def pick(res, side, key):
    return [r[key] for r in res[side]] or [None]


def scrapes(ctx):
    st, cfg = ctx.stack, ctx.cfg
    urls = {"original": lambda page: st.original.url(f"/web1/{page}"),
            "direct": lambda page: st.exporter.url(f"/{page}")}
    if ctx.ours_scrape:
        urls["ours"] = lambda page: st.module_nginx.url(f"/web1/{page}")
    rows = []
    for page, label in (("m150k", "150KB"), ("m1m", "1MB")):
        for system in urls:  # warm-up: connections, page cache
            measure.wrk(urls[system](page), 1, 1, ctx.workdir)
        for conc in (1, 16):
            res = interleaved_wrk(ctx, {s: u(page) for s, u in urls.items()}, conc, f"row 1 {label}")
            n = f"scrape {label} c{conc}"
            rows.append(make_row(1, f"{n} req/s", "req/s", "original", ">= 1.0x", pick(res, "ours", "rps"),
                                 pick(res, "original", "rps"), cfg.reps))
            rows.append(make_row(1, f"{n} p50", "ms", "original", "<= 1.0x", pick(res, "ours", "p50_ms"),
                                 pick(res, "original", "p50_ms"), cfg.reps))
            rows.append(make_row(1, f"{n} p99", "ms", "original", "<= 1.0x", pick(res, "ours", "p99_ms"),
                                 pick(res, "original", "p99_ms"), cfg.reps))
            goal = "ours - direct <= 0.5 ms" if label == "150KB" else "ours <= 3 ms"
            rows.append(make_row(1, f"{n} p50 vs direct", "ms", "direct", goal, pick(res, "ours", "p50_ms"),
                                 pick(res, "direct", "p50_ms"), cfg.reps))
    return rows


# -- row 8: scrapes as Prometheus makes them ---------------------------------------------------------------------
# Prometheus 2.42's own request headers (scrape/scrape.go): it asks for OpenMetrics, accepts gzip and says its timeout.
PROMETHEUS_HEADERS = (
    "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding: gzip",
    "User-Agent: Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds: 10",
)


def prometheus_scrapes(ctx):
    """A real node_exporter behind the tunnel, scraped one at a time with Prometheus' headers (its answer gzipped:
    the exporter's own work is most of the time); and the 150 KB page through an nginx without upstream keepalive,
    so each request opens a new channel."""
    st, cfg = ctx.stack, ctx.cfg
    rows = []
    if ctx.node_exporter_port:
        # Rows 4-6 rewrote the original's blocks for their own hosts: put back the setup's, node's included.
        st.original.write_routes(ctx.original_routes)
        st.original.reload()
        measure.poll_until_200(st.original.port, "/node/metrics")
        urls = {"original": st.original.url("/node/metrics"),
                "direct": f"http://127.0.0.1:{ctx.node_exporter_port}/metrics"}
        if ctx.ours_scrape and ctx.ours_node:
            urls["ours"] = st.module_nginx.url("/node/metrics")
        for url in urls.values():  # warm-up
            measure.wrk(url, 1, 1, ctx.workdir, PROMETHEUS_HEADERS)
        res = interleaved_wrk(ctx, urls, 1, "row 8 node_exporter", PROMETHEUS_HEADERS)
        n = "scrape node_exporter gzip c1"
        rows.append(make_row(8, f"{n} p50", "ms", "original", "<= 1.0x", pick(res, "ours", "p50_ms"),
                             pick(res, "original", "p50_ms"), cfg.reps))
        rows.append(make_row(8, f"{n} p50 vs direct", "ms", "direct", "ours - direct small",
                             pick(res, "ours", "p50_ms"), pick(res, "direct", "p50_ms"), cfg.reps))
    else:
        ctx.note("row 8: prometheus-node-exporter is not installed, its rows are not measured")
    urls = {"direct": st.exporter.url("/m150k")}
    if ctx.ours_scrape and getattr(st, "module_nginx_fresh", None):
        urls["ours"] = st.module_nginx_fresh.url("/web1/m150k")
    for url in urls.values():
        measure.wrk(url, 1, 1, ctx.workdir)
    res = interleaved_wrk(ctx, urls, 1, "row 8 150KB fresh upstream")
    rows.append(make_row(8, "scrape 150KB c1 fresh upstream p50 vs direct", "ms", "direct",
                         "ours - direct <= 0.5 ms", pick(res, "ours", "p50_ms"), pick(res, "direct", "p50_ms"),
                         cfg.reps))
    return rows


# -- row 2: module routing overhead, no SSH ------------------------------------------------------------------------
def routing(ctx):
    st, cfg = ctx.stack, ctx.cfg
    urls = {"static": lambda page: st.static_keepalive.url(f"/direct/{page}")}
    if ctx.ours_module:
        urls["ours"] = lambda page: st.module_nginx.url(f"/direct/{page}")
    rows = []
    for page, label in (("m1k", "1KB"), ("m150k", "150KB")):
        for system in urls:
            measure.wrk(urls[system](page), 1, 1, ctx.workdir)
        res = {"ours": [], "static": []}
        for rep in range(cfg.reps):
            for system in alternate(rep, list(urls)):
                res[system].append(measure.wrk(urls[system](page), 16, cfg.wrk_seconds, ctx.workdir))
        pick = lambda s, k: [r[k] for r in res[s]] or [None]  # noqa: E731
        rows.append(make_row(2, f"routing {label} c16 req/s", "req/s", "static proxy_pass", ">= 0.97x",
                             pick("ours", "rps"), pick("static", "rps"), cfg.reps))
        rows.append(make_row(2, f"routing {label} c16 p50", "ms", "static proxy_pass", "<= 1.03x",
                             pick("ours", "p50_ms"), pick("static", "p50_ms"), cfg.reps))
    return rows


# -- row 3: bulk relay through one tunnel --------------------------------------------------------------------------
def curl_mb_per_s(port, path):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=300).stdout
    size, seconds = out.split()
    if int(size) != stk.BULK_BYTES:
        raise RuntimeError(f"bulk download through port {port} got {size} bytes")
    return int(size) / 1e6 / float(seconds)


def bulk(ctx):
    st, cfg = ctx.stack, ctx.cfg
    rows = []
    for cipher in stk.CIPHERS:
        ports = {"sshd": ctx.bulk_ports["sshd"][cipher]}
        if ctx.bulk_ports.get("ours"):
            ports["ours"] = ctx.bulk_ports["ours"][cipher]
        res = {"ours": [], "sshd": []}
        for rep in range(cfg.reps):
            for system in alternate(rep, list(ports)):
                res[system].append(curl_mb_per_s(ports[system], "/" + stk.BULK_PAGE))
        rows.append(make_row(3, f"bulk 100MB {cipher}", "MB/s", "sshd", ">= 1.0x", res["ours"] or [None],
                             res["sshd"], cfg.reps))
    return rows


# -- rows 4 and 6: many clients at once, then idle --------------------------------------------------------------
def scrape_all(port, paths, deadline_s):
    """GETs every path through one keep-alive connection per thread until each answered 200."""
    pending = list(paths)
    lock = threading.Lock()
    end = time.monotonic() + deadline_s
    failures = []

    def worker():
        conn = None
        while time.monotonic() < end:
            with lock:
                if not pending:
                    return
                path = pending.pop()
            ok = False
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn:
                    conn.close()
                conn = None
            if not ok:
                with lock:
                    pending.insert(0, path)
                time.sleep(0.01)
        failures.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if pending:
        raise RuntimeError(f"{len(pending)} targets not scrapeable within {deadline_s}s, e.g. {pending[:3]}")


def server_pids(ctx, system):
    st = ctx.stack
    return measure.descendants(st.sshd.pid) if system == "sshd" else [st.tunneld.pid]


def wait_server_idle(ctx, system):
    """sshd: back to the processes it had after setup (the persistent tunnels of rows 1-3)."""
    if system == "sshd":
        idle = ctx.sshd_idle_pids
        stk.mp.wait_until(lambda: set(measure.descendants(ctx.stack.sshd.pid)) <= idle, timeout=60,
                          what="sshd back to its idle processes")


def storm_once(ctx, system, n, rep):
    """n load-client sessions connecting at once; returns (seconds until all forwarded, seconds until all
    scrapeable through nginx, PSS kB of the server processes with n idle tunnels, PSS kB before)."""
    st, cfg = ctx.stack, ctx.cfg
    names = ctx.target_names[:n]
    wait_server_idle(ctx, system)
    pss_before = measure.pss_kb(server_pids(ctx, system))
    if system == "sshd":
        base = stk.free_port_block(n, 29000, 32700)
        st.original.write_routes("".join(stk.static_route(names[i], base + i) for i in range(n)))
        st.original.reload()
        time.sleep(1.0)  # config prepared in advance, not part of the measurement: let the old worker go
        server_port, spec, nginx = st.sshd_port, f"port:{base}", st.original
    else:
        server_port, spec = st.tunneld_port, "name:t{i}"
        nginx = st.module_nginx if ctx.ours_module else None
    lc = measure.LoadClient(st.procs, ctx.loadclient, server_port, st.client_key, n, spec, concurrency=n,
                            hold_seconds=-1, cipher=stk.CIPHERS[cfg.cipher], setup_timeout=120, retries=10)
    try:
        e = lc.wait_event("all_forwarded", timeout=cfg.storm_timeout)
        if e["failed"]:
            raise RuntimeError(f"{system}: {e['failed']} of {n} sessions failed to forward")
        t_forwarded = e["elapsed_s"]
        if nginx is not None:
            scrape_all(nginx.port, [f"/{name}/metrics" for name in names], deadline_s=cfg.storm_timeout)
        t_scrapeable = time.monotonic() - lc.started if nginx is not None else None
        time.sleep(1.0)  # let per-connection buffers settle before reading memory
        pss = measure.pss_kb(server_pids(ctx, system))
    finally:
        lc.stop()
    return t_forwarded, t_scrapeable, pss, pss_before


def storm_and_memory(ctx):
    cfg = ctx.cfg
    n = cfg.storm_sessions
    systems = ["sshd"] + (["ours"] if ctx.ours_tunneld else [])
    res = {s: [] for s in ("sshd", "ours")}
    for rep in range(cfg.heavy_reps):
        for system in alternate(rep, systems):
            try:
                res[system].append(storm_once(ctx, system, n, rep))
            except RuntimeError as err:
                ctx.note(f"rows 4/6 {system}: {err}")
    col = lambda s, k: [r[k] for r in res[s]] or [None]  # noqa: E731
    per_tunnel = lambda s: [(r[2] - r[3]) / n for r in res[s]] or [None]  # noqa: E731
    return [
        make_row(6, f"{n} clients at once: all forwarded", "s", "sshd", "<= 0.2x", col("ours", 0), col("sshd", 0),
                 cfg.heavy_reps),
        make_row(6, f"{n} clients at once: all scrapeable", "s", "sshd + static nginx", "<= 0.2x", col("ours", 1),
                 col("sshd", 1), cfg.heavy_reps),
        make_row(4, f"{n} idle tunnels: PSS of server processes", "kB", "sshd", "<= 0.05x",
                 col("ours", 2), col("sshd", 2), cfg.heavy_reps),
        make_row(4, f"{n} idle tunnels: PSS per tunnel", "kB", "sshd", "ours < 100 kB", per_tunnel("ours"),
                 per_tunnel("sshd"), cfg.heavy_reps),
    ]


# -- row 5: forward accepted -> first 200 through nginx -------------------------------------------------------------
def first_200_once(ctx, system, rep):
    st, cfg = ctx.stack, ctx.cfg
    name = f"fresh{rep}"
    if system == "original":
        port = stk.mp.free_port()
        server_port, spec = st.sshd_port, f"port:{port}"
    else:  # declared at setup, as the original's targets file line would be
        server_port, spec = st.tunneld_port, f"name:{name}"
    lc = measure.LoadClient(st.procs, ctx.loadclient, server_port, st.client_key, 1, spec, concurrency=1,
                            hold_seconds=-1, cipher=stk.CIPHERS[cfg.cipher])
    try:
        accepted = lc.wait_event("forwarded", timeout=30)["wall"]
        if system == "original":
            # The original image: a new host means a new location block and a reload.
            with open(st.original.routes_path, "a") as f:
                f.write(stk.static_route(name, port))
            st.original.reload()
            t200 = measure.poll_until_200(st.original.port, f"/{name}/metrics")
        else:
            t200 = measure.poll_until_200(st.module_nginx.port, f"/{name}/metrics")
    finally:
        lc.stop()
    return (t200 - accepted) * 1000.0


def first_200(ctx):
    cfg = ctx.cfg
    ctx.stack.original.write_routes("")
    ctx.stack.original.reload()
    systems = ["original"] + (["ours"] if ctx.ours_scrape else [])
    res = {"ours": [], "original": []}
    for rep in range(cfg.reps):
        for system in alternate(rep, systems):
            res[system].append(first_200_once(ctx, system, rep))
    return [make_row(5, "forward accepted -> first 200", "ms", "edit + nginx reload", "ours < 50 ms",
                     res["ours"] or [None], res["original"], cfg.reps)]


# -- row 7: many tunnels scraped on a schedule ----------------------------------------------------------------------
def sustained(ctx):
    st, cfg = ctx.stack, ctx.cfg
    n, period, duration = cfg.sustained_sessions, cfg.sustained_period, cfg.sustained_seconds
    name = f"{n} tunnels scraped every {period:g}s for {duration:g}s"
    if not ctx.ours_scrape:
        return [make_row(7, f"{name}: errors", "count", "-", "0", [None], [None], 1),
                make_row(7, f"{name}: p99", "ms", "-", "< 100 ms", [None], [None], 1)]
    lc = measure.LoadClient(st.procs, ctx.loadclient, st.tunneld_port, st.client_key, n, "name:t{i}",
                            concurrency=200, hold_seconds=-1, body_bytes=16 * 1024,
                            cipher=stk.CIPHERS[cfg.cipher], retries=3)
    latencies, errors = [], []
    try:
        e = lc.wait_event("all_forwarded", timeout=cfg.storm_timeout)
        if e["failed"]:
            ctx.note(f"row 7: {e['failed']} of {n} sessions failed to forward")
        t0 = time.monotonic() + 0.5
        schedule = [(t0 + k * period + i * period / n, i) for k in range(int(duration // period)) for i in range(n)]
        heapq.heapify(schedule)
        lock = threading.Lock()

        def worker():
            conn = None
            while True:
                with lock:
                    if not schedule:
                        return
                    due, i = heapq.heappop(schedule)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                start = time.monotonic()
                try:
                    conn = conn or http.client.HTTPConnection("127.0.0.1", st.module_nginx.port, timeout=10)
                    conn.request("GET", f"/t{i}/metrics")
                    r = conn.getresponse()
                    body = r.read()
                    ok = r.status == 200 and len(body) == 16 * 1024
                except (OSError, http.client.HTTPException) as exc:
                    ok = False
                    body = repr(exc).encode()
                    if conn:
                        conn.close()
                    conn = None
                with lock:
                    latencies.append((time.monotonic() - start) * 1000.0)
                    if not ok:
                        errors.append((i, body[:100]))

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        lc.stop()
    if errors:
        ctx.note(f"row 7: {len(errors)} failed scrapes, first: {errors[:3]}")
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
    return [make_row(7, f"{name}: errors", "count", "-", "0", [len(errors)], [None], 1),
            make_row(7, f"{name}: p99", "ms", "-", "< 100 ms", [p99], [None], 1)]
