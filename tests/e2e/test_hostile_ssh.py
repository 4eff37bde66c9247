"""Port 22 under hostile clients: each case is refused with a log line and, where tunneld counts it, a
counter, while a healthy tunnel is scraped through nginx with zero errors. Cases already asserted in
test_tunneld_refusals.py (unknown key, from= mismatch, --user, shell/exec/sftp, -L/-D to the exporter, port
range, undeclared names, takeover attempt on a disconnected target) are not repeated here."""
import os
import socket
import subprocess
import time

import pytest

import mp
import hostile_harness as hh
from hostile_harness import scraping, stack  # noqa: F401 (fixtures)
from ssh_harness import SSH_OPTIONS, keygen


def test_password_keyboard_interactive_and_none_are_refused_and_counted(stack, scraping, workdir):
    probe = hh.auth_probe(workdir)
    before = stack.counter('auth_failures_total{reason="method"}')
    mark = stack.log_mark()
    for method in ("password", "kbdint"):
        out = subprocess.run([probe, str(stack.tunneld.port), "tunnel", method, "2"], capture_output=True,
                             text=True, timeout=30).stdout
        # denied, and the only method the server names is publickey (SSH_AUTH_METHOD_PUBLICKEY == 4)
        assert out.count("result=denied methods=4") == 2, out
    log = stack.wait_log_since(mark, "detail=\"keyboard-interactive authentication is disabled, use a key\"")
    assert log.count("reason=method") >= 4, log
    assert 'user=tunnel fingerprint=- reason=method detail="password authentication is disabled, use a key"' in log
    stack.wait_counter('auth_failures_total{reason="method"}', before + 4)
    # "none" is how clients ask for the method list: denied, publickey offered, not logged as an attack
    out = subprocess.run([probe, str(stack.tunneld.port), "tunnel", "none", "1"], capture_output=True, text=True,
                         timeout=30).stdout
    assert "result=denied methods=4" in out, out


def test_auth_attempts_are_capped_per_connection(stack, scraping, workdir):
    probe = hh.auth_probe(workdir)
    mark = stack.log_mark()
    out = subprocess.run([probe, str(stack.tunneld.port), "tunnel", "password", "20"], capture_output=True,
                         text=True, timeout=30).stdout
    attempts = [dict(field.split("=", 1) for field in line.split()) for line in out.splitlines()
                if line.startswith("attempt=")]
    # the sixth failure is answered and closes the connection (README: 6 failed attempts): the seventh finds it
    # closed, and the client never gets to try 20 passwords
    assert [a["result"] for a in attempts] == ["denied"] * 6 + ["error"], out
    assert all(a["connected"] == "1" for a in attempts[:5]) and attempts[6]["connected"] == "0", out
    log = stack.wait_log_since(mark, "too many authentication failures")
    assert log.count("reason=method") == 6, log


def test_env_x11_and_agent_requests_get_no_session(stack, scraping):
    mark = stack.log_mark()
    r = stack.tunneld.ssh_run(stack.keys["owner"], "-X", "-A", "-o", "SetEnv=MP_PROBE=1",
                              "-o", "ForwardX11Trusted=yes", command=["id"])
    assert r.returncode == 1, r
    assert "ssh -N" in r.stderr, r.stderr
    log = stack.wait_log_since(mark, "type=exec")
    assert f"fingerprint={stack.fingerprint('owner')} type=exec" in log
    assert "uid=" not in r.stdout  # nothing ran
    # sftp (the real client, not just -s): refused the same way
    mark = stack.log_mark()
    p = subprocess.run(["sftp", "-b", "-", *SSH_OPTIONS, "-i", stack.keys["owner"], "-P", str(stack.tunneld.port),
                        "tunnel@127.0.0.1"], input="ls /\n", capture_output=True, text=True, timeout=20)
    assert p.returncode != 0, p
    stack.wait_log_since(mark, "type=subsystem")
    stack.wait_counter('channels_refused_total{type="subsystem"}', 1)


def test_local_forwards_into_the_proxy_other_tunnels_and_outside_are_refused(stack, scraping):
    """-L must never make the proxy a way into anything: its own SSH and HTTP ports, another host's tunnel
    port, or an outside address (192.0.2.1 is TEST-NET-1: the proxy must refuse before any connect)."""
    healthy = stack.tunneld.connected(hh.HEALTHY)
    destinations = {"tunneld": ("127.0.0.1", stack.tunneld.port), "nginx": ("127.0.0.1", stack.nginx.port),
                    "tunnel": (healthy["address"], healthy["port"]), "outside": ("192.0.2.1", 80)}
    local = {what: mp.free_port() for what in destinations}
    forwards = []
    for what, (host, port) in destinations.items():
        forwards += ["-L", f"127.0.0.1:{local[what]}:{host}:{port}"]
    before = stack.counter('channels_refused_total{type="direct-tcpip"}')
    mark = stack.log_mark()
    client = stack.tunneld.ssh(stack.keys["owner"], extra=[*forwards, "-o", "ExitOnForwardFailure=no"], name="ssh-L")
    try:
        mp.wait_until(lambda: all(mp.port_open(p) for p in local.values()), 10, what="client -L listeners")
        for what, port in local.items():
            with hh.raw_connect(port) as s:
                s.sendall(b"GET /healthy/bytes/5 HTTP/1.0\r\n\r\n" if what != "tunneld" else b"SSH-2.0-x\r\n")
                data, closed = hh.read_until_closed(s, timeout=10)
            assert closed and data == b"", (what, data)
    finally:
        stack.procs.stop(client)
    log = stack.wait_log_since(mark, "type=direct-tcpip")
    mp.wait_until(lambda: stack.log_since(mark).count("type=direct-tcpip") >= 4, 10, what="4 refusals")
    stack.wait_counter('channels_refused_total{type="direct-tcpip"}', before + 4)
    assert "192.0.2.1" not in subprocess.run(["ss", "-Htn"], capture_output=True, text=True).stdout, log


@pytest.mark.parametrize("spec", ["22:127.0.0.1:9100", "80:127.0.0.1:9100", "65535:127.0.0.1:9100"])
def test_remote_forwards_to_ssh_http_and_high_ports_are_refused(stack, scraping, spec):
    before = stack.counter('forwards_refused_total{reason="port_range"}')
    mark = stack.log_mark()
    r = stack.tunneld.ssh_run(stack.keys["shared"], "-N", "-R", spec)
    assert r.returncode == 255 and "remote port forwarding failed" in r.stderr, r
    port = spec.split(":")[0]
    # Without a bind address OpenSSH sends the name "localhost": a string on the wire, never resolved.
    stack.wait_log_since(mark, f"requested=localhost:{port} reason=port_range")
    stack.wait_counter('forwards_refused_total{reason="port_range"}', before + 1)
    assert hh.listeners_on(int(port)) == [] or port == "22" or port == "80"  # nothing of ours listens there


@pytest.mark.parametrize("bind", ["*", "[::]", "0.0.0.0"])
def test_any_bind_address_still_listens_on_loopback_only(stack, scraping, bind, procs):
    spec = f"{bind}:{stack.open_port}:127.0.0.1:{stack.exporter.port}"
    client = stack.tunneld.ssh(stack.keys["shared"], spec, name="ssh-bind")
    entry = mp.wait_until(lambda: stack.tunneld.connected("open"), 10, what=f"open connected with bind {bind}")
    # The forward's own address, and 127.0.0.1 for its declared fixed port: loopback only, whatever was asked.
    assert sorted(hh.listeners_on(stack.open_port)) == sorted([f"{entry['address']}:{stack.open_port}",
                                                               f"127.0.0.1:{stack.open_port}"])
    assert stack.nginx.status("/open/bytes/3") == 200
    procs.stop(client)
    mp.wait_until(lambda: not stack.tunneld.connected("open"), 10, what="open gone")


def test_live_target_of_another_key_cannot_be_taken(stack, scraping):
    """The shared key and a stranger's key both try to take the healthy host's name while it is live."""
    before = stack.counter("takeover_attempts_total")
    mark = stack.log_mark()
    port = stack.tunneld.connected(hh.HEALTHY)["port"]
    for key in ("shared", "owner"):
        r = stack.tunneld.ssh_run(stack.keys[key], "-N", "-R", f"{hh.HEALTHY}:80:127.0.0.1:1")
        assert r.returncode == 255 and "remote port forwarding failed" in r.stderr, r
        r = stack.tunneld.ssh_run(stack.keys[key], "-N", "-R", f"{port}:127.0.0.1:1")
        assert r.returncode == 255, r
    log = stack.wait_log_since(mark, "takeover attempt")
    assert f"fingerprint={stack.fingerprint('shared')}" in log and f"fingerprint={stack.fingerprint('owner')}" in log
    stack.wait_counter("takeover_attempts_total", before + 2)
    assert "takeover client" not in log  # no takeover happened
    assert stack.tunneld.connected(hh.HEALTHY)["port"] == port


def test_streamlocal_forwards_create_no_socket(stack, scraping, workdir):
    remote_sock = os.path.join(workdir, "remote.sock")
    r = stack.tunneld.ssh_run(stack.keys["owner"], "-N", "-R", f"{remote_sock}:127.0.0.1:9100")
    assert r.returncode == 255 and "forwarding failed" in r.stderr, r
    assert not os.path.exists(remote_sock)
    # -L to a unix socket on the proxy (direct-streamlocal channel): refused too
    local = mp.free_port()
    mark = stack.log_mark()
    client = stack.tunneld.ssh(stack.keys["owner"], extra=["-L", f"127.0.0.1:{local}:/run/nginx.sock",
                                                           "-o", "ExitOnForwardFailure=no"], name="ssh-Lsock")
    try:
        mp.wait_until(lambda: mp.port_open(local), 10, what="client listener")
        with hh.raw_connect(local) as s:
            s.sendall(b"x")
            data, closed = hh.read_until_closed(s, timeout=10)
    finally:
        stack.procs.stop(client)
    assert closed and data == b""
    stack.wait_log_since(mark, "channel refused")


def test_a_thousand_forward_requests_in_one_session(stack, scraping, workdir, procs):
    key = keygen(workdir, "bulk")
    for i in range(20):
        stack.registry.add(f"bulk{i}", "--key-file", key + ".pub")
    before = stack.counter('forwards_refused_total{reason="too_many"}')
    mark = stack.log_mark()
    # OpenSSH drops duplicate -R specs: each request names a different exporter port
    specs = [f"bulk{i % 20}:80:127.0.0.1:{20000 + i}" for i in range(1000)]
    client = stack.tunneld.ssh(key, *specs, extra=["-o", "ExitOnForwardFailure=no"], name="ssh-bulk")
    stack.wait_counter('forwards_refused_total{reason="too_many"}', before + 984, timeout=30)
    log = stack.log_since(mark)
    assert log.count("forward added") == 16, log[-2000:]
    assert 'reason=too_many detail="at most 16 forwards per session"' in log
    live = [e for e in stack.tunneld.ls() if e["name"].startswith("bulk") and e["state"] == "connected"]
    assert len(live) == 16
    assert stack.nginx.status("/bulk0/bytes/7") == 502  # the session still serves (nothing on port 20000)
    procs.stop(client)
    mp.wait_until(lambda: not any(e["name"].startswith("bulk") and e["state"] == "connected"
                                  for e in stack.tunneld.ls()), 10, what="bulk forwards gone")
    for i in range(20):
        stack.registry.remove(f"bulk{i}")


def test_unauthenticated_connections_are_capped_and_timed_out(stack, scraping, procs):
    """200 connections from 20 addresses that never authenticate cost nothing to the healthy tunnel; past 64 of
    them random early drop refuses some new ones, a real host still gets in by retrying (as autossh does); all
    are closed after the 20 s login grace."""
    drops = 'connections_refused_total{reason="random_early_drop"}'
    drops_before = stack.counter(drops)
    grace_before = stack.counter('auth_failures_total{reason="grace_time"}')
    mark = stack.log_mark()
    idle = []
    owner = None
    try:
        for i in range(200):
            idle.append(hh.raw_connect(stack.tunneld.port, source=f"127.0.3.{i // 10 + 1}"))
        for s in idle[:100]:
            try:
                s.sendall(b"SSH-2.0-idle\r\n")  # half of them get as far as the banner
            except OSError:
                pass  # refused at once
        stack.wait_counter(drops, drops_before + 1)
        stack.wait_log_since(mark, "reason=random_early_drop")
        owner = hh.login_with_retries(stack, "owner", f"owned:80:127.0.0.1:{stack.exporter.port}", "owned")
        # the login grace (20 s) closes every one of them
        deadline = time.monotonic() + 30
        for s in idle:
            _, closed = hh.read_until_closed(s, timeout=max(0.1, deadline - time.monotonic()))
            assert closed, "an unauthenticated connection outlived the login grace time"
        admitted = stack.log_since(mark).count(": connect client=127.0.3.")
        assert 64 <= admitted < 200, admitted
        stack.wait_counter('auth_failures_total{reason="grace_time"}', grace_before + admitted)
        assert "login grace time exceeded" in stack.log_since(mark)
    finally:
        for s in idle:
            s.close()
        if owner is not None:
            procs.stop(owner)


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                              # HTTP on the SSH port
    b"\x00\xff" * 5000 + b"\r\n",                                      # binary garbage before any banner
    b"A" * 300000,                                                     # a banner line that never ends
    b"SSH-2.0-x\r\n" + bytes(range(256)) * 64,                         # garbage after a valid banner
    b"SSH-1.5-old\r\n",                                                # SSH 1
    b"SSH-2.0-x\r\n\x00\x00\x10\x00\x08\x14" + os.urandom(40),         # KEXINIT cut short, then close
], ids=["http", "binary", "endless-banner", "after-banner", "ssh1", "truncated-kexinit"])
def test_garbage_and_truncated_key_exchange_are_dropped(stack, scraping, payload):
    mark = stack.log_mark()
    with hh.raw_connect(stack.tunneld.port) as s:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if payload.startswith(b"SSH-2.0-x\r\n\x00"):
            s.shutdown(socket.SHUT_WR)
        data, closed = hh.read_until_closed(s, timeout=15)
    assert closed, "tunneld kept a garbage connection open"
    assert not data or data.startswith(b"SSH-2.0-"), data[:100]
    log = stack.wait_log_since(mark, "disconnect client=")
    assert "fingerprint=-" in log  # it never got as far as a key


def test_stalled_key_exchange_does_not_block_other_logins(stack, scraping, procs):
    """A client that sends its banner and half a KEXINIT, then stalls: every other login proceeds."""
    stalled = hh.raw_connect(stack.tunneld.port)
    try:
        stalled.sendall(b"SSH-2.0-stall\r\n\x00\x00\x04\x00\x08\x14" + b"\x01" * 100)
        client = stack.tunneld.ssh(stack.keys["shared"], f"open:80:127.0.0.1:{stack.exporter.port}", name="ssh-o")
        mp.wait_until(lambda: stack.tunneld.connected("open"), 10, what="login beside a stalled kex")
        assert stack.nginx.status("/open/bytes/9") == 200
        procs.stop(client)
    finally:
        stalled.close()
