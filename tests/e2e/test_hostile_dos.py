"""One host must not be able to exhaust tunneld's descriptors, one address must not be able to block
every login, and tunneld must neither spin nor stay stuck at its descriptor limit. Every case runs beside the
healthy stack of hostile_harness; its scrape loop must see zero errors."""
import itertools
import os
import socket
import subprocess
import threading
import time

import pytest

import hostile_harness as hh
import mp
import nginx_harness as h
from hostile_harness import scraping, stack  # noqa: F401 (fixtures)
from ssh_harness import Tunneld, endpoint, keygen

HOST_PROGRAM = os.path.join(os.path.dirname(__file__), "misbehaving_host.py")
BANNER = b"SSH-2.0-stalling\r\n"
HOST_NUMBERS = itertools.count(1)


# A spinning thread takes most of a core (3 s in 3 s idle, at least 0.75 s on a busy machine); refusing a flood
# from one address and relaying the scrape loop took 0.11-0.13 s of 3 s here.
FLOOD_CPU_SECONDS = 0.6


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_used_over(pid, seconds):
    """CPU seconds tunneld uses over a wall-clock window: about 0 when idle; a spinning thread takes a whole
    core, or at least a share of one on a busy machine (0.75 s of 3 s measured here while others built)."""
    before = cpu_seconds(pid)
    time.sleep(seconds)  # the measured window itself, not synchronisation
    return cpu_seconds(pid) - before


def lowest_fd_count(pid, seconds=1.0):
    """The fewest descriptors seen over a short window: relays of in-flight healthy scrapes come and go."""
    deadline = time.monotonic() + seconds
    low = fd_count(pid)
    while time.monotonic() < deadline:
        low = min(low, fd_count(pid))
        time.sleep(0.02)
    return low


def start_misbehaving_host(stack, procs, mode):
    target = f"dos-{mode}-{next(HOST_NUMBERS)}"
    key = keygen(stack.workdir, target)
    stack.registry.add(target, "--key-file", key + ".pub")
    host = procs.start(["/usr/bin/python3", HOST_PROGRAM, str(stack.tunneld.port), key, target, mode],
                       name=f"host-{mode}")
    mp.wait_until(lambda: stack.tunneld.connected(target) or host.poll() is not None, 15,
                  what=f"{mode} host connected")
    assert host.poll() is None, mp.Processes.log_text(host)
    return target, host


class Abuse:
    """`threads` scrapers asking nginx (proxy_read_timeout 1s) for the misbehaving target, back to back."""

    def __init__(self, nginx_port, target, threads=4, max_seconds=60):
        self.nginx_port, self.path = nginx_port, f"/{target}/bytes/100"
        self.statuses = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        import http.client
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.nginx_port, timeout=10)
            try:
                conn.request("GET", self.path)
                self.statuses.append(conn.getresponse().status)
            except Exception as exc:
                self.statuses.append(repr(exc))
            finally:
                conn.close()

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


@pytest.fixture(scope="module")
def impatient_nginx(stack):
    """A second nginx on the same registry that gives up on an upstream after 1 s (stopped with the stack)."""
    prefix_dir = os.path.join(stack.workdir, "impatient")  # its own prefix: pid file and logs of its own
    os.makedirs(prefix_dir, mode=0o755)
    nginx = h.Nginx(stack.procs, prefix_dir, stack.registry.path, read_timeout="1s")
    stack.env.instances.append(nginx)
    return nginx.start()


@pytest.mark.parametrize("mode", ["silent", "mute-open"])
def test_misbehaving_host_cannot_keep_descriptors(stack, impatient_nginx, procs, mode):
    pid = stack.tunneld.proc.pid
    target, host = start_misbehaving_host(stack, procs, mode)
    loop = stack.scrape_loop().start()
    baseline = lowest_fd_count(pid)
    abandoned_before = sum(v for k, v in stack.tunneld.counters().items() if k.startswith("relays_abandoned_total"))
    abuse = Abuse(impatient_nginx.port, target).start()
    owner = None
    try:
        mp.wait_until(lambda: len(abuse.statuses) >= 8, 30, what="abusive scrapes timing out")
        # A legitimate OpenSSH host logs in and is scraped while the abuse goes on.
        owner = stack.tunneld.ssh(stack.keys["owner"], f"owned:80:127.0.0.1:{stack.exporter.port}",
                                  name="ssh-owner")
        mp.wait_until(lambda: stack.tunneld.connected("owned"), 15, what="owner logs in during the abuse")
        for _ in range(5):
            assert stack.nginx.status("/owned/bytes/1000") == 200
        peak = fd_count(pid)
        mp.wait_until(lambda: len(abuse.statuses) >= 24, 60, what="more abusive scrapes")
    finally:
        abuse.stop()
        if owner is not None:
            procs.stop(owner)
        loop.stop()
    loop.assert_clean()
    assert abuse.statuses and all(s == 504 for s in abuse.statuses), abuse.statuses[:10]
    mp.wait_until(lambda: not stack.tunneld.connected("owned"), 10, what="owner gone")
    # No core spins while the abandoned relays wind down (tunneld is otherwise idle now).
    used = cpu_used_over(pid, 3)
    assert used < 0.2, f"tunneld used {used:.2f}s CPU in 3 s with nothing to do"
    mp.wait_until(lambda: fd_count(pid) <= baseline, 30,
                  what=f"descriptors back to {baseline} (peak {peak}, now {fd_count(pid)})")
    abandoned = sum(v for k, v in stack.tunneld.counters().items() if k.startswith("relays_abandoned_total"))
    assert abandoned - abandoned_before >= 20, stack.tunneld.counters()
    assert stack.tunneld.connected(target), "the misbehaving host itself stays connected"
    reason = "client sent nothing for 10 s after the scraper closed" if mode == "silent" else \
        "scraper closed before the client accepted the channel"
    assert reason in stack.tunneld.log()
    procs.stop(host)
    stack.assert_alive()


def test_unanswered_channel_open_ends_after_ten_seconds(stack, scraping, procs):
    """A scraper that keeps waiting (no nginx timeout) still loses its relay when the open is never answered."""
    target, host = start_misbehaving_host(stack, procs, "mute-open")
    tunnel = endpoint(stack.tunneld.connected(target))
    before = stack.counter('relays_abandoned_total{reason="open_timeout"}')
    started = time.monotonic()
    waiting = [socket.create_connection(tunnel, timeout=5) for _ in range(3)]
    try:
        for s in waiting:
            s.sendall(b"GET /bytes/1 HTTP/1.0\r\n\r\n")
        for s in waiting:
            data, closed = hh.read_until_closed(s, timeout=20)
            assert closed and data == b"", data
        elapsed = time.monotonic() - started
        assert 9 < elapsed < 15, elapsed
    finally:
        for s in waiting:
            s.close()
    stack.wait_counter('relays_abandoned_total{reason="open_timeout"}', before + 3)
    assert "client did not answer the channel open within 10 s" in stack.tunneld.log()
    procs.stop(host)


def test_session_relay_cap_refuses_only_that_sessions_connections(stack, scraping, procs):
    target, host = start_misbehaving_host(stack, procs, "silent")
    tunnel = endpoint(stack.tunneld.connected(target))
    pid = stack.tunneld.proc.pid
    baseline = lowest_fd_count(pid)
    before = stack.counter('relays_refused_total{reason="session_cap"}')
    mark = stack.log_mark()
    held = []
    try:
        for _ in range(64):
            s = socket.create_connection(tunnel, timeout=5)
            s.sendall(b"GET /bytes/1 HTTP/1.0\r\n\r\n")
            held.append(s)
        stack.wait_counter(f'connects_total{{tunnel="{target}"}}', 64, timeout=15)
        extra = [socket.create_connection(tunnel, timeout=5) for _ in range(6)]
        for s in extra:
            data, closed = hh.read_until_closed(s, timeout=10)
            assert closed and data == b"", "a relay past the session cap was kept"
            s.close()
        stack.wait_counter('relays_refused_total{reason="session_cap"}', before + 6)
        assert "reason=session_cap" in stack.log_since(mark)
        # Another session is not limited by this one's relays.
        for _ in range(5):
            assert stack.nginx.status(f"/{hh.HEALTHY}/bytes/1000") == 200
    finally:
        for s in held:
            s.close()
    # The scrapers are gone: the silent client's relays end within its answer time.
    mp.wait_until(lambda: stack.log_since(mark).count("client sent nothing for 10 s after the scraper closed") >= 64,
                  30, what="held relays ended")
    mp.wait_until(lambda: lowest_fd_count(pid) <= baseline, 15, what=f"descriptors back to {baseline}")
    procs.stop(host)


class StallingFlood:
    """Keeps `count` raw connections from one source address open that send an SSH banner and stall; every one
    tunneld closes is opened again. `banners` counts connections tunneld admitted (it sent its banner)."""

    def __init__(self, port, source, count=30, max_seconds=90):
        self.port, self.source, self.count = port, source, count
        self.banners = 0
        self.refused = 0
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self):
        s = hh.raw_connect(self.port, source=self.source)
        s.sendall(BANNER)
        s.setblocking(False)
        return s

    def _run(self):
        socks = {}  # socket -> whether tunneld sent anything (admitted)
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                while len(socks) < self.count:
                    try:
                        socks[self._open()] = False
                    except OSError:
                        break
                for s, seen in list(socks.items()):
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self.refused += not seen
                        del socks[s]
                        s.close()
                        continue
                    self.banners += data.startswith(b"SSH-2.0-")
                    socks[s] = True
                self._stop.wait(0.2)
        finally:
            for s in socks:
                s.close()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)


def admitted(port, source, count=10, timeout=5):
    """Opens `count` connections from `source`; True when tunneld sent its banner on every one (then closes)."""
    socks = []
    try:
        for _ in range(count):
            socks.append(hh.raw_connect(port, timeout=timeout, source=source))
        for s in socks:
            try:
                if not s.recv(100).startswith(b"SSH-2.0-"):
                    return False
            except OSError:
                return False
        return True
    finally:
        for s in socks:
            s.close()


def test_one_address_flood_does_not_block_logins_from_others(stack, scraping, procs):
    """127.0.0.2 holds as many unauthenticated connections as it can and reopens each one tunneld closes, for
    longer than the 20 s login grace time; a host on 127.0.0.3 logs in and is scraped meanwhile."""
    port, pid = stack.tunneld.port, stack.tunneld.proc.pid
    per_source = 'connections_refused_total{reason="per_source"}'
    before = stack.counter(per_source)
    grace_before = stack.counter('auth_failures_total{reason="grace_time"}')
    baseline = lowest_fd_count(pid)
    mark = stack.log_mark()
    flood = StallingFlood(port, "127.0.0.2").start()
    owner = None
    try:
        stack.wait_counter(per_source, before + 20)
        owner = stack.tunneld.ssh(stack.keys["owner"], f"owned:80:127.0.0.1:{stack.exporter.port}",
                                  extra=["-o", "BindAddress=127.0.0.3"], name="ssh-owner")
        mp.wait_until(lambda: stack.tunneld.connected("owned"), 15, what="a host on another address logs in")
        assert "auth accepted client=127.0.0.3:" in stack.log_since(mark)
        for _ in range(5):
            assert stack.nginx.status("/owned/bytes/1000") == 200
        # Its login gave its pre-auth slot back: 127.0.0.3 still has its whole quota.
        assert admitted(port, "127.0.0.3")
        # Refusing the flood costs little: no core spins while it goes on (the scrape loop's relaying included).
        used = cpu_used_over(pid, 3)
        assert used < FLOOD_CPU_SECONDS, f"tunneld used {used:.2f}s CPU in 3 s under a one-address flood"
        # The flood's held connections reach the login grace time; their slots come back and are taken again.
        stack.wait_counter('auth_failures_total{reason="grace_time"}', grace_before + 10, timeout=40)
        mp.wait_until(lambda: flood.banners > 10, 15, what="flood admitted again after the grace time")
    finally:
        flood.stop()
        if owner is not None:
            procs.stop(owner)
    log = stack.log_since(mark)
    assert "connect refused client=127.0.0.2:" in log and "reason=per_source" in log, log[-2000:]
    assert 'detail="10 unauthenticated connections from 127.0.0.2 already (the per-address limit)"' in log
    assert flood.refused > 0
    # Every slot of the flood came back when it hung up, and every descriptor it cost.
    mp.wait_until(lambda: admitted(port, "127.0.0.2"), 15, what="127.0.0.2 admitted again after the flood")
    mp.wait_until(lambda: lowest_fd_count(pid) <= baseline, 15,
                  what=f"descriptors back to {baseline} after the flood (now {fd_count(pid)})")


def test_failed_key_exchanges_give_their_slot_back(stack, scraping):
    """More failed handshakes from one address than its quota: each one gave its slot back."""
    for i in range(15):
        with hh.raw_connect(stack.tunneld.port, source="127.0.0.4") as s:
            if i % 2:
                s.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not an SSH banner: the key exchange fails at once
            else:
                s.sendall(BANNER + b"\x00\x00\x10\x00\x08\x14" + os.urandom(40))  # KEXINIT cut short
                s.shutdown(socket.SHUT_WR)
            _, closed = hh.read_until_closed(s, timeout=10)
            assert closed
    mp.wait_until(lambda: admitted(stack.tunneld.port, "127.0.0.4"), 15, what="127.0.0.4 keeps its quota")


def test_out_of_descriptors_pauses_accept_without_spinning_and_recovers(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    pid = t.proc.pid
    # Room for exactly 4 unauthenticated sessions (a socket and its epoll watch each): the 5th connection and
    # all after it wait in the listen backlog while accept fails with EMFILE.
    fds = [int(name) for name in os.listdir(f"/proc/{pid}/fd")]
    limit = max(len(fds) + 8, max(fds) + 1)
    limit += (limit - len(fds)) % 2
    sessions = (limit - len(fds)) // 2
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True)
    held = []
    try:
        for i in range(30):  # from several addresses: the per-address limit must not be what stops them
            held.append(hh.raw_connect(t.port, source=f"127.0.2.{i // 10 + 1}"))
        mp.wait_until(lambda: t.log().count("connect client=") >= sessions, 15, what=f"{sessions} sessions")
        used = cpu_used_over(pid, 3)
        assert used < 0.2, f"tunneld used {used:.2f}s CPU in 3 s while out of descriptors"
        t.wait_log("accept paused", timeout=5)
        assert t.log().count("accept paused") == 1, "logged once per episode"
        assert 'reason="Too many open files"' in t.log()
    finally:
        for s in held:
            s.close()
    t.wait_log("accept resumed", timeout=15)
    t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: t.connected("web"), 20, what="a login after the descriptors came back")
