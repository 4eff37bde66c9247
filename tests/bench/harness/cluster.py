"""Rows 9-11: cluster mode against single-node mode, in the same run. Two proxies (tunneld --etcd + nginx with the
module, each with its own registry, SSH port and nginx) on one real etcd member (tests/e2e/etcd_harness, started
from the shipped docker/etcd/etcd.conf.yml: auto-compaction on), built with the e2e cluster helpers
(tests/e2e/cluster_harness.Proxy); beside them a single-node tunneld + nginx built the same way with no etcd.
nginx runs with the bench's settings (one worker, no access log) on both sides. Everything starts on free loopback
ports through the run's mp.Processes, so every process is stopped by pid at the end.

- row 9: N load-client sessions forwarded to proxy A; SIGKILL A's tunneld; the sessions reconnect to proxy B on
  their own (loadclient --reconnect-to B); time from the kill until all are forwarded again and until every target
  answers 200 through B's nginx. Baseline: the same N sessions on the single-node tunneld, SIGKILLed and restarted
  at once on the same port (loadclient --reconnect-to the same address).
- row 10: a 150 KB scrape through B while the tunnel (OpenSSH ssh -R) is on A (one hop) against the same scrape
  through A itself (the local route), wrk at concurrency 1, interleaved repetitions.
- row 11: etcd writes per reconnect of row 9: the etcd revision after the failover settled (A's lease expired)
  minus the revision just before the kill, divided by the number of sessions that reconnected."""
import json
import os
import signal
import time

from . import measure
from . import stack as stk
from .rows import alternate, interleaved_wrk, make_row, pick, scrape_all

mp = stk.mp

import cluster_harness  # noqa: E402  (tests/e2e, on sys.path through stack)
import etcd_harness  # noqa: E402
import nginx_harness  # noqa: E402
import ssh_harness  # noqa: E402

HOP_TARGET = "hop150"
LEASE_TTL = 3  # the e2e cluster's; the reconnect takes names over by compare-and-swap, not by waiting for it

# nginx as the bench's other stacks run it (one worker, no access log), with the module's cluster lines (the
# one-hop route) and pages from the shipped configuration.
NGINX_CONF = """\
load_module {module};
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 100000;
    tunnel_registry {registry};
    upstream tunnels {{
        tunnel;
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{cluster_lines}
            proxy_pass http://tunnels$tunnel_uri$is_args$args;
        }}
{pages}
    }}
}}
"""


def bench_nginx_conf(nginx, module, registry):
    nginx.write_conf(NGINX_CONF.format(module=module, prefix=nginx.prefix,
                                       registry=registry, port=nginx.port,
                                       cluster_lines=nginx_harness.CLUSTER_LOCATION_LINES,
                                       pages=cluster_harness.PAGES))


def tunneld_flags(stack):
    """The single-node bench tunneld's flags (stack.start_tunneld): one authorized key for every session, and a
    plain cap of 256 unauthenticated connections (every load-client session comes from 127.0.0.1)."""
    return ["--authorized-keys", stack.authorized_keys, "--per-source-max-startups", "256",
            "--max-startups", "256:30:256"]


def targets_file(workdir, name, names_ports):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.writelines(f"localhost:{port} {n}\n" for n, port in names_ports)
    return path


class ClusterBench:
    """The single-node side (`single`: an ssh_harness.Tunneld and its nginx) and the cluster (`etcd`, proxies `a`
    and `b`), with the same N + 1 targets declared on both (t0..t{N-1} for the load client, HOP_TARGET for row 10),
    each side with its own block of fixed ports (the cluster's shared by A and B, as one port plan)."""

    def __init__(self, ctx):
        st = ctx.stack
        self.ctx, self.stack, self.procs = ctx, st, st.procs
        # The e2e helpers give nginx's workers the registry group from the environment, as the e2e fixtures do.
        os.environ["MONITORING_PROXY_REGISTRY_GROUP"] = stk.REGISTRY_GROUP
        self.n = ctx.cfg.cluster_sessions
        self.names = [f"t{i}" for i in range(self.n)]
        declared = self.names + [HOP_TARGET]
        root = os.path.join(ctx.workdir, "cluster-bench")
        os.makedirs(root)
        os.chmod(root, 0o755)
        self.root = root

        # Single node: no etcd at all.
        single_dir = os.path.join(root, "single")
        os.makedirs(single_dir)
        os.chmod(single_dir, 0o755)
        base = stk.free_port_block(len(declared), 12000, 20000)
        self.single = ssh_harness.Tunneld(self.procs, single_dir, port_range=(base, base + len(declared) - 1),
                                          extra=tunneld_flags(st))
        self._use_built(self.single)
        os.makedirs(self.single.host_keys, mode=0o700)
        self.single.tunnelctl("init")
        self.single.tunnelctl("import-targets", targets_file(root, "single-targets",
                                                             [(n, base + i) for i, n in enumerate(declared)]))
        self.single_nginx = nginx_harness.Nginx(self.procs, single_dir, self.single.registry)
        bench_nginx_conf(self.single_nginx, st.module_so, self.single.registry)
        self.single.start()
        self.single_nginx.start()

        # The cluster: one etcd member (enough for a benchmark: the writes are the same, a 3-member cluster
        # only adds replication round trips on the same 2 cores), two proxies.
        self.etcd = etcd_harness.EtcdCluster(self.procs, root, size=1).start()
        host_key = ssh_harness.keygen(root, "proxy_host_key")
        cbase = stk.free_port_block(len(declared), base + len(declared), 24000)
        self.proxies = []
        for node in ("proxy-a", "proxy-b"):
            p = cluster_harness.Proxy(self.procs, root, node, self.etcd, host_key, lease_ttl=LEASE_TTL,
                                      keepalive=15, extra=tunneld_flags(st))
            p.tunneld.port_range = (cbase, cbase + len(declared) - 1)
            self._use_built(p.tunneld)
            bench_nginx_conf(p.nginx, st.module_so, p.tunneld.registry)
            self.proxies.append(p)
        self.a, self.b = self.proxies
        self.import_to_etcd([(n, cbase + i) for i, n in enumerate(declared)])
        for p in self.proxies:
            p.start(timeout=30)
        for p in self.proxies:  # each node's mirror holds every declared target before anything connects
            mp.wait_until(lambda: status(p, f"/{declared[-1]}/metrics") == 503, timeout=30,
                          what=f"{p.node_id} knows {declared[-1]} (503: declared, not connected)")

    def _use_built(self, tunneld):
        tunneld.tunneld_path, tunneld.tunnelctl_path = self.stack.tunneld_bin, self.stack.tunnelctl_bin

    def import_to_etcd(self, names_ports, chunk=100):
        """tunnelctl --etcd import-targets, growing the file by `chunk` targets per call: each call is one etcd
        transaction with an operation per new target, and etcd refuses transactions of more than 128 operations
        (--max-txn-ops, unset in the shipped configuration)."""
        for end in range(chunk, len(names_ports) + chunk, chunk):
            self.a.tunnelctl("import-targets", targets_file(self.root, "cluster-targets", names_ports[:end]))

    # -- etcd -----------------------------------------------------------------------------------------------------
    def etcd_json(self, *args):
        return json.loads(self.etcd.etcdctl(*args, "-w", "json").stdout)

    def tunnel_keys(self):
        """Number of live tunnel keys in etcd."""
        prefix = cluster_harness.PREFIX + "v1/tunnels/"
        # etcdctl 3.4 has no --count-only; a range response counts every key in the range whatever its limit.
        return int(self.etcd_json("get", "--prefix", prefix, "--keys-only", "--limit", "1").get("count", 0))

    def node_lease(self, node_id):
        kvs = self.etcd_json("get", cluster_harness.PREFIX + "v1/nodes/" + node_id).get("kvs", [])
        return kvs[0]["lease"] if kvs else None

    def tunnel_leases(self):
        """{lease: number of live tunnel keys attached to it}."""
        kvs = self.etcd_json("get", "--prefix", cluster_harness.PREFIX + "v1/tunnels/", "--keys-only").get("kvs", [])
        held = {}
        for kv in kvs:
            held[int(kv.get("lease", 0))] = held.get(int(kv.get("lease", 0)), 0) + 1
        return held

    def leases(self):
        return {int(lease["id"]) for lease in self.etcd_json("lease", "list").get("leases") or []}


def status(nginx_or_proxy, path):
    nginx = getattr(nginx_or_proxy, "nginx", nginx_or_proxy)
    try:
        return measure.http_get(nginx.port, path, timeout=2.0)[0]
    except OSError:
        return None


def bench(ctx):
    if getattr(ctx, "cluster", None) is None:
        ctx.cluster = ClusterBench(ctx)
    return ctx.cluster


def built_with_cluster(ctx):
    """False for a build configured with -DMP_CLUSTER=OFF: then the cluster rows are not run at all (as the e2e
    cluster tests are skipped), rather than reported as unmeasured."""
    # The e2e helpers find the programs (tunneld, tunnelctl, the module) and the build's options in mp.BUILD_DIR.
    mp.BUILD_DIR = ctx.stack.build_dir
    supported, why = cluster_harness.cluster_support()
    if not supported:
        ctx.note(f"cluster rows not run: {why}")
    return supported


def available(ctx):
    """(measurable?, why not). Not measurable: the rows are reported with `ours` null, so the run fails."""
    if not (ctx.ours_tunneld and ctx.ours_module):
        return False, "tunneld or the module is not built or not up"
    if not os.access(etcd_harness.ETCD, os.X_OK):
        return False, f"{etcd_harness.ETCD} is not installed (Debian etcd-server)"
    return True, ""


# -- rows 9 and 11: hosts reconnecting after their proxy died -------------------------------------------------------
def no_live_tunnels_single(cb):
    return not [e for e in cb.single.ls() if e.get("state") == "connected"]


def reconnect_once(ctx, cb, side):
    """One repetition of one side: N sessions up, SIGKILL the tunneld holding them, time until they are forwarded
    again and until all are scrapeable through the surviving (cluster: B) or restarted (single) proxy's nginx.
    Returns (seconds until all forwarded again, seconds until all scrapeable, etcd writes, reconnects)."""
    st, cfg, n = ctx.stack, ctx.cfg, cb.n
    if side == "cluster":
        mp.wait_until(lambda: cb.tunnel_keys() == 0, timeout=60, what="no tunnel left in etcd")
        first, then, serve = cb.a.ssh_port, cb.b.ssh_port, cb.b.nginx
    else:
        mp.wait_until(lambda: no_live_tunnels_single(cb), timeout=60, what="no tunnel left on the single node")
        first = then = cb.single.port
        serve = cb.single_nginx
    paths = [f"/{name}/metrics" for name in cb.names]
    lc = measure.LoadClient(st.procs, ctx.loadclient, first, st.client_key, n, "name:t{i}", concurrency=n,
                            hold_seconds=-1, cipher=stk.CIPHERS[cfg.cipher], setup_timeout=120, retries=10,
                            reconnect_to=f"127.0.0.1:{then}")
    try:
        e = lc.wait_event("all_forwarded", timeout=cfg.storm_timeout)
        if e["failed"]:
            raise RuntimeError(f"{side}: {e['failed']} of {n} sessions failed to forward")
        # Setup, not measured: every target served (the cluster: through B, one hop to A).
        scrape_all(serve.port, paths, deadline_s=cfg.storm_timeout)
        writes = None
        if side == "cluster":
            mp.wait_until(lambda: cb.tunnel_keys() == n, timeout=60, what=f"{n} tunnel keys in etcd")
            lease_a, lease_b = int(cb.node_lease(cb.a.node_id)), int(cb.node_lease(cb.b.node_id))
            rev0 = cb.etcd.revision()
        cpu = {"etcd": cb.etcd.members[0].proc, "loadclient": lc.proc}  # CPU seconds spent during the failover
        if side == "cluster":
            cpu["tunneld B"] = cb.b.tunneld.proc
        cpu = {what: (p, mp.cpu_seconds(p.pid)) for what, p in cpu.items()}
        killed = time.monotonic()
        if side == "cluster":
            cb.a.tunneld.stop(signal.SIGKILL)
        else:
            cb.single.stop(signal.SIGKILL)
            cb.single.start(same_port=True)
            cpu["tunneld (restarted)"] = (cb.single.proc, 0.0)
        e = lc.wait_event("all_reconnected", timeout=cfg.storm_timeout)
        t_forwarded = e["reconnect_s"]
        scrape_all(serve.port, paths, deadline_s=cfg.storm_timeout)
        t_scrapeable = time.monotonic() - killed
        # On 2 shared cores the wall time follows the CPU the failover costs: shown with every repetition.
        ctx.note(f"row 9 {side}: CPU from the kill to all scrapeable: " +
                 ", ".join(f"{what} {mp.cpu_seconds(p.pid) - before:.2f} s" for what, (p, before) in cpu.items()))
        reconnects = e["reconnects"]
        if e["failed"] or reconnects != n:
            raise RuntimeError(f"{side}: {reconnects} of {n} sessions reconnected, {e['failed']} failed")
        if side == "cluster":
            # Settled: A's lease expired (its node key and whatever it still held went with it) and every tunnel
            # key is B's; the writes are everything etcd's revision counted since just before the kill.
            mp.wait_until(lambda: lease_a not in cb.leases(), timeout=LEASE_TTL + 30,
                          what="proxy A's lease expired")
            mp.wait_until(lambda: cb.tunnel_leases() == {lease_b: n}, timeout=30,
                          what=f"{n} tunnel keys in etcd, all on B's lease")
            writes = cb.etcd.revision() - rev0
            ctx.note(f"row 11: etcd revision +{writes} from just before the kill to the settled failover, "
                     f"{reconnects} reconnects")
    finally:
        lc.stop()
        if side == "cluster" and not (cb.a.tunneld.proc and cb.a.tunneld.proc.poll() is None):
            cb.a.tunneld.start(same_port=True)
            cb.a.tunneld.wait_log("cluster connected", 30)
    return t_forwarded, t_scrapeable, writes, reconnects


def reconnect(ctx):
    cfg = ctx.cfg
    n = cfg.cluster_sessions
    name = f"{n} hosts reconnect after their proxy's SIGKILL"
    if not built_with_cluster(ctx):
        return []
    ok, why = available(ctx)
    res = {"cluster": [], "single": []}
    if ok:
        cb = bench(ctx)
        for rep in range(cfg.heavy_reps):
            for side in alternate(rep, ["single", "cluster"]):
                try:
                    res[side].append(reconnect_once(ctx, cb, side))
                except (RuntimeError, AssertionError) as err:
                    ctx.note(f"row 9 {side}: {err}")
                    res[side].append((None, None, None, None))
    else:
        ctx.note(f"row 9: {why}; not measured")
    col = lambda s, k: [r[k] for r in res[s]] or [None]  # noqa: E731
    per_reconnect = [r[2] / r[3] if r[2] is not None and r[3] else None for r in res["cluster"]] or [None]
    return [
        make_row(9, f"{name}: all forwarded again", "s", "single node restarted", "report",
                 col("cluster", 0), col("single", 0), cfg.heavy_reps),
        make_row(9, f"{name}: all scrapeable", "s", "single node restarted", "report",
                 col("cluster", 1), col("single", 1), cfg.heavy_reps),
        make_row(11, f"{n} reconnects to another proxy: etcd writes per reconnect", "writes", "-", "report",
                 per_reconnect, [None] * len(per_reconnect), cfg.heavy_reps),
    ]


# -- row 10: the one-hop route against the local one ----------------------------------------------------------------
def one_hop(ctx):
    st, cfg = ctx.stack, ctx.cfg
    name = "cluster one-hop 150KB c1"
    if not built_with_cluster(ctx):
        return []
    ok, why = available(ctx)
    hop = local = hop99 = local99 = [None]
    if ok:
        cb = bench(ctx)
        st.ssh_forward(cb.a.ssh_port, f"{HOP_TARGET}:80:127.0.0.1:{st.exporter.port}", stk.CIPHERS[cfg.cipher])
        cb.a.wait_forward(HOP_TARGET, timeout=20)
        path = f"/{HOP_TARGET}/m150k"
        for p in (cb.a, cb.b):
            mp.wait_until(lambda: status(p, path) == 200, timeout=20, what=f"{HOP_TARGET} served by {p.node_id}")
        # interleaved_wrk's sides: "ours" = through B (one hop to A), "original" = through A (local).
        urls = {"ours": f"http://{cb.b.http}{path}", "original": f"http://{cb.a.http}{path}"}
        for url in urls.values():
            measure.wrk(url, 1, 1, ctx.workdir)
        res = interleaved_wrk(ctx, urls, 1, "row 10 one-hop")
        hop, local = pick(res, "ours", "p50_ms"), pick(res, "original", "p50_ms")
        hop99, local99 = pick(res, "ours", "p99_ms"), pick(res, "original", "p99_ms")
    else:
        ctx.note(f"row 10: {why}; not measured")
    extra = [h - lo if h is not None and lo is not None else None for h, lo in zip(hop, local)]
    return [
        make_row(10, f"{name} p50", "ms", "local route (proxy A)", "ours - local < 0.5 ms", hop, local, cfg.reps),
        make_row(10, f"{name} p99", "ms", "local route (proxy A)", "report", hop99, local99, cfg.reps),
        make_row(10, f"{name} p50 extra", "ms", "-", "< 0.5 ms", extra, [None] * len(extra), cfg.reps),
    ]
