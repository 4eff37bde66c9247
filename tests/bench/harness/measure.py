"""Measurements: wrk runs (requests/s and latency percentiles through a Lua summary), PSS of process trees,
single HTTP fetches, the load client's JSON progress, and the statistics of interleaved repetitions."""
import http.client
import json
import os
import select
import statistics
import subprocess
import time

WRK = "/usr/bin/wrk"

WRK_SUMMARY_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"status_errors":%d,"p50_us":%.1f,"p99_us":%.1f,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk(url, connections, seconds, workdir, headers=()):
    """One wrk run: {"rps", "p50_ms", "p99_ms", "errors"}. Non-2xx answers count as errors. `headers`: extra
    request header lines ("Name: value")."""
    script = os.path.join(workdir, "wrk_summary.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(WRK_SUMMARY_LUA)
    threads = min(connections, 2)
    header_args = [a for h in headers for a in ("-H", h)]
    out = subprocess.run([WRK, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
                          *header_args, "-s", script, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((l for l in out.splitlines() if l.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary for {url}: {out}")
    s = json.loads(line[len("BENCHJSON "):])
    return {"rps": s["requests"] / (s["duration_us"] / 1e6), "p50_ms": s["p50_us"] / 1000.0,
            "p99_ms": s["p99_us"] / 1000.0, "errors": s["errors"] + s["status_errors"], "requests": s["requests"]}


def http_get(port, path, timeout=5.0):
    """(status, body length) of one GET on a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, len(r.read())
    finally:
        c.close()


def poll_until_200(port, path, deadline_s=30.0):
    """Wall-clock time of the first 200 for path, polling about every millisecond."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if http_get(port, path, timeout=2.0)[0] == 200:
                return time.time()
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"no 200 for {path} on port {port} within {deadline_s}s")


def descendants(pid):
    """pid and all its descendants (from /proc/*/stat parent links)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def pss_kb(pids):
    """Sum of Pss over pids (kB), from smaps_rollup."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class LoadClient:
    """The load client as a child process, its JSON lines read without blocking the harness."""

    def __init__(self, procs, binary, server_port, key, sessions, forward_spec, concurrency, body_bytes=1024,
                 hold_seconds=-1, cipher=None, setup_timeout=120, retries=2, reconnect_to=None):
        """reconnect_to: "HOST:PORT[,...]", where sessions the server closed set up again (--reconnect-to)."""
        args = [binary, "--port", str(server_port), "--identity", key, "--sessions", str(sessions),
                "--concurrency", str(concurrency), "--forward-spec", forward_spec, "--body-bytes", str(body_bytes),
                "--hold-seconds", str(hold_seconds), "--setup-timeout", str(setup_timeout),
                "--retries", str(retries), "--progress-interval", "1"]
        if cipher:
            args += ["--cipher", cipher]
        if reconnect_to:
            args += ["--reconnect-to", reconnect_to]
        self.procs = procs
        self.started = time.monotonic()
        self.proc = procs.start(args, name="loadclient")
        self.events = []
        self._log = open(self.proc.log_path, "rb")
        self._partial = b""

    def _read(self):
        data = self._log.read()
        if data:
            self._partial += data
            *lines, self._partial = self._partial.split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    try:
                        self.events.append(json.loads(line))
                    except ValueError:
                        pass

    def wait_event(self, name, timeout):
        end = time.monotonic() + timeout
        seen = 0
        while True:
            self._read()
            for e in self.events[seen:]:
                if e.get("event") == name:
                    return e
            seen = len(self.events)
            if self.proc.poll() is not None:
                self._read()
                for e in self.events[seen:]:
                    if e.get("event") == name:
                        return e
                raise RuntimeError(f"loadclient exited {self.proc.returncode} before '{name}': "
                                   f"{self.procs.log_text(self.proc)[-2000:]}")
            if time.monotonic() > end:
                raise RuntimeError(f"loadclient: no '{name}' within {timeout}s")
            time.sleep(0.005)

    def stop(self):
        self.procs.stop(self.proc)
        self._log.close()


def paired(ours, baseline):
    """Median of each side and of the per-repetition ratios ours/baseline, with the ratios' min and max."""
    # Ratios pair the sides of one repetition before a missing measurement is dropped, so one cannot shift the rest.
    ratios = [o / b for o, b in zip(ours, baseline) if o is not None and b]
    ours = [x for x in ours if x is not None]
    baseline = [x for x in baseline if x is not None]
    row = {"ours": statistics.median(ours) if ours else None,
           "baseline": statistics.median(baseline) if baseline else None, "ratio": None, "spread": None}
    if ratios:
        row["ratio"] = statistics.median(ratios)
        row["spread"] = [min(ratios), max(ratios)]
    return row
