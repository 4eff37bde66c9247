"""A real Prometheus for end-to-end tests: one job discovering its targets over HTTP service discovery (a proxy's
/-/sd), scraping and refreshing every second, queried through its HTTP API."""
import json
import os
import subprocess
import urllib.parse
import urllib.request

import mp


class Prometheus:
    def __init__(self, procs, workdir, sd_url, name="prometheus"):
        self.port = mp.free_port()
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: monitoring-proxy
    http_sd_configs:
      - url: {sd_url}
        refresh_interval: 1s
""")
        check = subprocess.run(["promtool", "check", "config", config], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = procs.start(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.dir}/data",
                                 f"--web.listen-address=127.0.0.1:{self.port}"], name=name)
        mp.wait_until(lambda: self.get("/-/ready") is not None, timeout=30, what="prometheus ready")

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def query(self, expr):
        """Result vector of an instant query: [(labels, value)]."""
        text = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        data = json.loads(text)
        assert data["status"] == "success", text
        return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]

    def up(self, tunnel):
        result = self.query(f'up{{tunnel="{tunnel}"}}')
        return result[0] if len(result) == 1 else None

    def samples(self, selector, seconds):
        """The raw samples of every series matching `selector` over the last `seconds`:
        [(labels, [(unix time, value)])], one entry per series (a relabelled or duplicated target shows as two)."""
        text = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": f"{selector}[{int(seconds)}s]"}))
        data = json.loads(text)
        assert data["status"] == "success", text
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["data"]["result"]]
