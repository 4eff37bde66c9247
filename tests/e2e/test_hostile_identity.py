"""A response to GET /NAME/... only ever comes from a live forward of NAME (README "Security").

Every way a forward can end (cancel, client exit, takeover by the same key, keepalive drop, tunneld restart) is
run while scrapers hammer the old and the new owner of the same tunnel port through nginx with `keepalive`
upstreams and two workers. Each exporter answers with its own identity; not one answer may carry the wrong one,
and the ended name answers 503 from the moment its forward is gone. Port ranges of one and two ports force the
reuse; a declared fixed port stays free for its target; out-of-range port values are refused."""
import http.client
import http.server
import os
import signal
import socket
import threading
import time

import pytest

import hostile_harness as hh
import mp
import nginx_harness as h
from ssh_harness import SSH_OPTIONS, Tunneld, keygen

PARAMIKO_PY = "/usr/bin/python3"


class IdentityExporter:
    """HTTP/1.1 keep-alive server: every answer says which exporter gave it, so a pooled connection that reaches
    the wrong host shows."""

    def __init__(self, identity):
        payload = f"identity={identity}\n".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.identity = identity
        self.port = mp.free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Scrapers:
    """Threads that GET /NAME/id for every name through nginx over persistent connections, recording when each
    request started and what came back. Bounded by count and time; stopped explicitly."""

    def __init__(self, nginx_port, names, threads=4, max_requests=40000, max_seconds=120):
        self.port = nginx_port
        self.names = names
        self.results = []  # (started monotonic, name, status, body)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        conn = None
        i = 0
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if len(self.results) >= self.max_requests:
                    return
            name = self.names[i % len(self.names)]
            i += 1
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", f"/{name}/id")
                r = conn.getresponse()
                body = r.read().decode(errors="replace")
                status = r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                status, body = -1, repr(e)
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.results.append((started, name, status, body))
        if conn is not None:
            conn.close()

    def count(self, name=None, status=None, since=0.0):
        with self.lock:
            return sum(1 for t, n, s, _ in self.results
                       if (name is None or n == name) and (status is None or s == status) and t >= since)

    def wait_answers(self, name, status, at_least, since=0.0, timeout=20):
        mp.wait_until(lambda: self.count(name, status, since) >= at_least, timeout,
                      what=f"{at_least} answers {status} for {name} (have {self.count(name, status, since)})")

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=20)
        return list(self.results)


def assert_identities(results, identity_of, at_least=1000):
    """Every 200 for NAME must carry the identity of NAME's exporter at that time: identity_of(name, started)
    returns the set of identities acceptable for a request started then. A run too short to have mixed anything
    proves nothing: at least `at_least` answers."""
    assert len(results) >= at_least, f"only {len(results)} requests ran"
    wrong = [(n, b) for t, n, s, b in results if s == 200 and b.strip() not in identity_of(n, t)]
    assert not wrong, f"{len(wrong)} answers with the wrong identity of {len(results)}, e.g. {wrong[:5]}"


def assert_503_after(results, name, gone):
    """From the moment NAME's forward is gone (plus the registry read's 50 ms), NAME answers 503 only."""
    after = [st for t, n, st, _ in results if n == name and t >= gone + 0.05]
    assert after and set(after) == {503}, {st: after.count(st) for st in set(after)}


class Setup:
    """tunneld with a small port range, nginx (2 workers, keepalive upstreams), one key per name."""

    def __init__(self, workdir, procs, range_size, tunneld_extra=()):
        self.workdir, self.procs = workdir, procs
        lo = Tunneld(procs, workdir).port_range[0]
        self.tunneld = Tunneld(procs, workdir, port_range=(lo, lo + range_size - 1), extra=list(tunneld_extra))
        self.env = h.Env(workdir, procs)  # the same registry directory as tunneld's, readable by nginx's workers
        assert self.env.registry.path == self.tunneld.registry
        self.keys = {}
        self.exporters = []

    def declare(self, name, *args):
        self.keys[name] = keygen(self.workdir, name)
        self.env.registry.add(name, "--key-file", self.keys[name] + ".pub", *args)

    def exporter(self, identity):
        e = IdentityExporter(identity)
        self.exporters.append(e)
        return e

    def start(self):
        self.tunneld.start()
        self.nginx = self.env.nginx(workers=2).start()
        return self

    def connect(self, name, exporter, extra=(), ssh_name=None):
        client = self.tunneld.ssh(self.keys[name], f"{name}:80:127.0.0.1:{exporter.port}", extra=list(extra),
                                  name=ssh_name or f"ssh-{name}")
        return client

    def serve(self, name, exporter):
        """Connects NAME's host and waits until nginx serves it; returns its ssh client and tunnel entry."""
        client = self.connect(name, exporter)
        entry = mp.wait_until(lambda: self.tunneld.connected(name), 15, what=f"{name} connected")
        self.wait_served(name, exporter.identity)
        return client, entry

    def take_port(self, name, exporter, port, scrapers, gone_name, gone):
        """NAME's host connects after GONE_NAME's forward ended: it must get the same port, be served, and
        GONE_NAME must be answering 503."""
        self.connect(name, exporter)
        assert mp.wait_until(lambda: self.tunneld.connected(name), 15, what=f"{name} connected")["port"] == port
        scrapers.wait_answers(name, 200, 300)
        scrapers.wait_answers(gone_name, 503, 100, since=gone)

    def wait_served(self, name, identity, timeout=15):
        last = []

        def served():
            status, text, _ = self.nginx.get(f"/{name}/id")
            last[:] = [status, text[:200]]
            return status == 200 and text.strip() == f"identity={identity}"
        mp.wait_until(served, timeout, what=f"{name} served by {identity} (last answer: {last})")

    def wait_gone(self, name, timeout=15):
        mp.wait_until(lambda: not self.tunneld.connected(name), timeout, what=f"{name} gone from the registry")
        return time.monotonic()

    def close(self):
        try:
            self.env.close()
        finally:
            for e in self.exporters:
                e.close()


@pytest.fixture
def make_setup(workdir, procs, monkeypatch):
    monkeypatch.setenv("MONITORING_PROXY_REGISTRY_GROUP", h.REGISTRY_GROUP)  # tunneld writes for nginx's workers
    made = []

    def make(range_size, **kw):
        s = Setup(workdir, procs, range_size, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def end_by_cancel(s, client, name, exporter, control):
    r = mp_run(["ssh", "-S", control, "-O", "cancel", "-R", f"{name}:80:127.0.0.1:{exporter.port}",
                *SSH_OPTIONS, "-p", str(s.tunneld.port), "tunnel@127.0.0.1"])
    assert r.returncode == 0, r


def mp_run(args):
    import subprocess
    return subprocess.run(args, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("how", ["cancel", "client_exit", "keepalive_drop"])
def test_a_port_passed_to_another_target_never_answers_for_the_old_one(make_setup, how):
    """Port range of one port: web1 holds it, its forward ends, web2 gets the same port. Scrapes of both names
    run all along: web2 never answers with web1's data, web1 answers 503 from the moment it is gone."""
    extra = ["--keepalive", "1", "--keepalive-max", "1"] if how == "keepalive_drop" else []
    s = make_setup(1, tunneld_extra=extra)
    s.declare("web1")
    s.declare("web2")
    s.start()
    one, two = s.exporter("web1"), s.exporter("web2")
    control = os.path.join(s.workdir, "ctl-web1")
    client_extra = ["-M", "-S", control] if how == "cancel" else []
    client = s.connect("web1", one, extra=client_extra)
    port = mp.wait_until(lambda: s.tunneld.connected("web1"), 15, what="web1 connected")["port"]
    s.wait_served("web1", "web1")
    scrapers = Scrapers(s.nginx.port, ["web1", "web2"])
    try:
        scrapers.wait_answers("web1", 200, 300)  # nginx's keepalive cache now holds connections to web1
        if how == "cancel":
            end_by_cancel(s, client, "web1", one, control)
        elif how == "client_exit":
            s.procs.stop(client)
        else:
            os.kill(client.pid, signal.SIGSTOP)  # silent: no FIN, only missed keepalives end it
        gone = s.wait_gone("web1", timeout=30)
        if how == "keepalive_drop":
            s.tunneld.wait_log("keepalives")  # "no answer to 1 keepalives": the startup line says keepalive=
        second = s.connect("web2", two)
        entry = mp.wait_until(lambda: s.tunneld.connected("web2"), 15, what="web2 connected")
        assert entry["port"] == port  # the one port of the range: reuse is forced
        scrapers.wait_answers("web2", 200, 300)
        scrapers.wait_answers("web1", 503, 100, since=gone)
    finally:
        results = scrapers.stop()
        if how == "keepalive_drop":
            os.kill(client.pid, signal.SIGCONT)
    assert_identities(results, lambda name, t: {f"identity={name}"})
    assert_503_after(results, "web1", gone)
    log = s.tunneld.log()
    assert "target=web1" in log and "closed_relays=" in log
    del second


def test_a_taken_over_session_serves_nothing_for_the_name_it_lost(make_setup):
    """The same key reconnects for web1 while its old session is still up (the newest session wins): from the
    moment the registry names the new session, no answer comes from the old one's exporter."""
    s = make_setup(2)
    s.declare("web1")
    s.start()
    old, new = s.exporter("web1-old"), s.exporter("web1-new")
    first = s.connect("web1", old, ssh_name="ssh-old")
    before = mp.wait_until(lambda: s.tunneld.connected("web1"), 15, what="web1 connected")
    s.wait_served("web1", "web1-old")
    scrapers = Scrapers(s.nginx.port, ["web1"])
    try:
        scrapers.wait_answers("web1", 200, 300)
        s.connect("web1", new, ssh_name="ssh-new")
        mp.wait_until(lambda: (s.tunneld.connected("web1") or {}).get("client") not in (None, before["client"]),
                      15, what="the new session recorded for web1")
        switched = time.monotonic()
        mp.wait_until(lambda: first.poll() is not None, 15, what="the old session closed by tunneld")
        scrapers.wait_answers("web1", 200, 700, since=switched)  # and 1,000 in all
    finally:
        results = scrapers.stop()
    assert_identities(results, lambda name, t: {"identity=web1-new"} if t >= switched
                      else {"identity=web1-old", "identity=web1-new"})
    assert s.tunneld.connected("web1")["address"] != before["address"]
    assert "reason=takeover" in s.tunneld.log()


def test_after_a_tunneld_restart_the_port_serves_only_its_new_owner(make_setup):
    """tunneld is killed with nginx's cache full of connections to web1; after the restart web2 is first to
    take the one port."""
    s = make_setup(1)
    s.declare("web1")
    s.declare("web2")
    s.start()
    one, two = s.exporter("web1"), s.exporter("web2")
    client, entry = s.serve("web1", one)
    scrapers = Scrapers(s.nginx.port, ["web1", "web2"])
    try:
        scrapers.wait_answers("web1", 200, 300)
        s.tunneld.stop(signal.SIGKILL)
        mp.wait_until(lambda: client.poll() is not None, 15, what="web1's client noticed")
        hh.restart_tunneld_on_same_port(s)
        gone = s.wait_gone("web1")  # swept: its instance is dead
        s.take_port("web2", two, entry["port"], scrapers, "web1", gone)
    finally:
        results = scrapers.stop()
    assert_identities(results, lambda name, t: {f"identity={name}"})
    assert_503_after(results, "web1", gone)


def test_after_a_takeover_the_port_passed_to_another_target_answers_only_for_it(make_setup):
    """Port range of one port: web1's session is taken over by a newer one of the same key (same port, new
    address), that one ends, and web2 gets the port. Neither of web1's exporters ever answers for web2."""
    s = make_setup(1)
    s.declare("web1")
    s.declare("web2")
    s.start()
    old, new, two = s.exporter("web1-old"), s.exporter("web1-new"), s.exporter("web2")
    first = s.connect("web1", old, ssh_name="ssh-old")
    before = mp.wait_until(lambda: s.tunneld.connected("web1"), 15, what="web1 connected")
    s.wait_served("web1", "web1-old")
    scrapers = Scrapers(s.nginx.port, ["web1", "web2"])
    try:
        scrapers.wait_answers("web1", 200, 300)
        newer = s.connect("web1", new, ssh_name="ssh-new")
        mp.wait_until(lambda: (s.tunneld.connected("web1") or {}).get("client") not in (None, before["client"]),
                      15, what="the new session recorded for web1")
        switched = time.monotonic()
        mp.wait_until(lambda: first.poll() is not None, 15, what="the old session closed by tunneld")
        scrapers.wait_answers("web1", 200, 300, since=switched)
        s.procs.stop(newer)
        gone = s.wait_gone("web1")
        s.take_port("web2", two, before["port"], scrapers, "web1", gone)
    finally:
        results = scrapers.stop()
    assert_identities(results, lambda name, t: {"identity=web2"} if name == "web2" else
                      {"identity=web1-new"} if t >= switched else {"identity=web1-old", "identity=web1-new"})
    assert_503_after(results, "web1", gone)


def test_self_registered_targets_passing_one_port_never_answer_for_each_other(make_setup, workdir):
    """--allow-undeclared: two hosts with authorized_keys keys each claim a new name; the first leaves and the
    second's name gets the same one port. The second never answers with the first's data."""
    authorized = os.path.join(workdir, "authorized_keys")
    s = make_setup(1, tunneld_extra=["--authorized-keys", authorized, "--allow-undeclared"])
    s.keys = {name: keygen(workdir, name) for name in ("self1", "self2")}
    with open(authorized, "w") as f:
        f.writelines(open(key + ".pub").read() for key in s.keys.values())
    s.start()
    one, two = s.exporter("self1"), s.exporter("self2")
    client, entry = s.serve("self1", one)
    scrapers = Scrapers(s.nginx.port, ["self1", "self2"])
    try:
        scrapers.wait_answers("self1", 200, 300)
        s.procs.stop(client)
        gone = s.wait_gone("self1")
        s.take_port("self2", two, entry["port"], scrapers, "self1", gone)
    finally:
        results = scrapers.stop()
    assert_identities(results, lambda name, t: {f"identity={name}"})
    assert_503_after(results, "self1", gone)
    assert "target self-registered target=self2" in s.tunneld.log()


def test_a_port_range_of_two_with_one_declared_fixed_port(make_setup):
    """The fixed port belongs to its target whether connected or not: dynamic targets come and go on the other
    port, a second one at a time is refused, and the fixed target can always connect."""
    s = make_setup(2)
    lo, hi = s.tunneld.port_range
    s.declare("fixed", "--port", str(hi))
    for name in ("dyn1", "dyn2", "dyn3"):
        s.declare(name)
    s.start()
    exporters = {name: s.exporter(name) for name in ("fixed", "dyn1", "dyn2", "dyn3")}
    scrapers = Scrapers(s.nginx.port, ["dyn1", "dyn2", "dyn3", "fixed"])
    try:
        for name in ("dyn1", "dyn2", "dyn3"):
            client = s.connect(name, exporters[name])
            entry = mp.wait_until(lambda n=name: s.tunneld.connected(n), 15, what=f"{name} connected")
            assert entry["port"] == lo, entry
            s.wait_served(name, name)
            scrapers.wait_answers(name, 200, 100)
            # The range's other port is the fixed one: a second dynamic target has nowhere to go.
            other = "dyn2" if name != "dyn2" else "dyn3"
            mark = len(s.tunneld.log())
            r = s.tunneld.ssh_run(s.keys[other], "-N", "-R", f"{other}:80:127.0.0.1:1")
            assert r.returncode == 255 and "remote port forwarding failed" in r.stderr, r
            assert "no free port" in s.tunneld.log()[mark:]
            s.procs.stop(client)
            s.wait_gone(name)
        s.connect("fixed", exporters["fixed"])
        assert mp.wait_until(lambda: s.tunneld.connected("fixed"), 15, what="fixed connected")["port"] == hi
        scrapers.wait_answers("fixed", 200, 100)
    finally:
        results = scrapers.stop()
    assert_identities(results, lambda name, t: {f"identity={name}"})


PORT_PROBE = r"""
import sys, paramiko
port, key, user, addr, fwd_port, cancel = sys.argv[1:7]
held = sys.argv[7] if len(sys.argv) > 7 else None  # a port forwarded first, which the cancel must not end
t = paramiko.Transport(("127.0.0.1", int(port)))
t.connect()
t.auth_publickey(user, paramiko.Ed25519Key.from_private_key_file(key))
if held is not None and t.global_request("tcpip-forward", (addr, int(held)), wait=True) is None:
    sys.exit("the held forward was refused")
kind = "cancel-tcpip-forward" if cancel == "1" else "tcpip-forward"
reply = t.global_request(kind, (addr, int(fwd_port)), wait=True)  # the port goes out as a uint32
print("accepted" if reply is not None else "refused")
t.close()
"""


# paramiko writes integers from 0xff000000 up in another encoding: 0xfeffffff is the largest plain uint32 it sends.
@pytest.mark.parametrize("value", [65536, 83848, 2 ** 31, 0xfeffffff])
@pytest.mark.parametrize("request_kind", ["tcpip-forward", "cancel-tcpip-forward"])
def test_port_values_above_65535_are_refused_not_truncated(make_setup, workdir, value, request_kind):
    """libssh keeps only the low 16 bits of the port (83848 would read as 18312, 2^31 as 0): tunneld reads the
    value as sent and refuses it, for a named forward (whose port is only echoed) as for a numbered one. A cancel
    is sent while the forward its low 16 bits name is held: truncated, it would end that forward."""
    s = make_setup(2)
    lo, _ = s.tunneld.port_range
    s.declare("web1", "--port", str(lo))
    s.start()
    probe = os.path.join(workdir, "port_probe.py")
    with open(probe, "w") as f:
        f.write(PORT_PROBE)
    cancel = request_kind == "cancel-tcpip-forward"
    # For a numbered forward, value's low half is the declared fixed port: truncation would serve web1.
    numbered = (value & ~0xffff) | lo
    for addr, port in (("web1", value), ("localhost", numbered)):
        mark = len(s.tunneld.log())
        held = [str(port & 0xffff)] if cancel else []
        r = mp_run([PARAMIKO_PY, probe, str(s.tunneld.port), s.keys["web1"], "tunnel", addr, str(port),
                    "1" if cancel else "0", *held])
        assert r.returncode == 0 and r.stdout.strip() == "refused", r
        line = "cancel refused" if cancel else "forward refused"
        log = s.tunneld.wait_log(line)[mark:]
        assert f"requested={addr}:{port}" in log, log
        assert "reason=invalid" in log and "> 65535" in log, log
        if cancel:  # the held forward ended with its session, never by the cancel
            mp.wait_until(lambda: "forward removed" in s.tunneld.log()[mark:], 10, what="the held forward ended")
        assert 'reason="cancel"' not in s.tunneld.log()[mark:], s.tunneld.log()[mark:]
    assert not s.tunneld.connected("web1")
    if not cancel:
        assert "forward added" not in s.tunneld.log()
