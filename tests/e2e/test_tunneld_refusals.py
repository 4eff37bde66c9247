"""Every refusal tunneld makes, seen from the real clients and in its log."""
import os
import socket
import subprocess

import pytest

import mp
from ssh_harness import Tunneld, body, fetch, fingerprint, keygen


@pytest.fixture
def setup(procs, workdir):
    """tunneld with target `web` bound to key `owner`, and an authorized_keys file for the shared key."""
    t = Tunneld(procs, workdir)
    owner = keygen(workdir, "owner")
    shared = keygen(workdir, "shared")
    restricted = keygen(workdir, "restricted")
    t.tunnelctl("add", "web", "--key-file", owner + ".pub")
    t.tunnelctl("add", "open", "--port", str(t.port_range[0] + 1))
    ak = os.path.join(workdir, "authorized_keys")
    with open(ak, "w") as f:
        f.write(open(shared + ".pub").read())
        f.write('from="10.0.0.0/8" ' + open(restricted + ".pub").read())
        f.write('command="/bin/false" ' + open(keygen(workdir, "cmd") + ".pub").read())
    t.extra = ["--authorized-keys", ak]
    t.start()
    return t, owner, shared, restricted, ak


def refused_forward(t, key, spec):
    r = t.ssh_run(key, "-N", "-R", spec)
    assert r.returncode == 255, r
    assert "remote port forwarding failed" in r.stderr, r.stderr
    return r


def test_unknown_key_is_refused(setup, workdir):
    t, *_ = setup
    stranger = keygen(workdir, "stranger")
    r = t.ssh_run(stranger, "-N", "-R", "web:80:127.0.0.1:1")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    log = t.wait_log("reason=unknown_key")
    assert f"fingerprint={fingerprint(stranger + '.pub')}" in log
    mp.wait_until(lambda: t.counters().get('auth_failures_total{reason="unknown_key"}', 0) >= 1, 5,
                  what="unknown_key counter")


def test_only_publickey_is_offered_and_password_refused(setup, workdir):
    t, *_ = setup
    r = t.ssh_run(keygen(workdir, "x"), "-o", "PubkeyAuthentication=no", "-o",
                  "PreferredAuthentications=password,keyboard-interactive", "-N")
    assert r.returncode == 255
    assert "Permission denied (publickey)." in r.stderr  # the server advertises publickey only
    # PuTTY's plink, given a password, finds no method it may use.
    hostkey = fingerprint(os.path.join(t.host_keys, "ssh_host_ed25519_key.pub"))
    p = subprocess.run(["plink", "-batch", "-ssh", "-P", str(t.port), "-hostkey", hostkey, "-pw", "secret",
                        "-N", "someone@127.0.0.1"], capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    assert "No supported authentication methods" in p.stderr, p.stderr


def test_from_mismatch_is_refused(setup):
    t, _, _, restricted, _ = setup
    r = t.ssh_run(restricted, "-N", "-R", "open:80:127.0.0.1:1")
    assert r.returncode == 255 and "Permission denied" in r.stderr
    t.wait_log("reason=from_mismatch")


def test_unknown_authorized_keys_option_reported_with_file_and_line(setup, workdir):
    t, _, _, _, ak = setup
    log = t.log()
    assert f'{ak}:3: unsupported option "command"; line skipped' in log
    r = t.ssh_run(os.path.join(workdir, "cmd"), "-N")
    assert r.returncode == 255 and "Permission denied" in r.stderr


def test_shell_and_exec_are_refused_with_a_message(setup):
    t, owner, *_ = setup
    r = t.ssh_run(owner, command=["uname", "-a"])
    assert r.returncode == 1
    assert "ssh -N" in r.stderr
    r = t.ssh_run(owner, "-T")  # shell without a tty
    assert r.returncode == 1 and "ssh -N" in r.stderr
    r = t.ssh_run(owner, "-s", command=["sftp"])
    assert r.returncode == 1
    t.wait_log("type=exec")
    t.wait_log("type=shell")


def test_local_and_dynamic_forwards_are_refused(setup, exporter):
    t, owner, *_ = setup
    lport, dport = mp.free_port(), mp.free_port()
    t.ssh(owner, extra=["-L", f"{lport}:127.0.0.1:{exporter.port}", "-D", f"127.0.0.1:{dport}",
                        "-o", "ExitOnForwardFailure=no"])
    mp.wait_until(lambda: mp.port_open(lport) and mp.port_open(dport), 10, what="client listeners")
    with pytest.raises(Exception):
        fetch(lport, "/bytes/10", timeout=5)
    t.wait_log("type=direct-tcpip")
    # SOCKS5 through -D: the server refuses the channel, the client answers the SOCKS request with a failure.
    with socket.create_connection(("127.0.0.1", dport), timeout=5) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + exporter.port.to_bytes(2, "big"))
        reply = s.recv(10)
        assert reply == b"" or reply[1] != 0
    mp.wait_until(lambda: t.log().count("type=direct-tcpip") >= 2, 10, what="second direct-tcpip refusal")


def test_port_outside_range_is_refused(setup):
    t, owner, *_ = setup
    refused_forward(t, owner, "8080:127.0.0.1:9100")
    t.wait_log("reason=port_range")


def test_streamlocal_forward_is_refused(setup, workdir):
    t, owner, *_ = setup
    r = t.ssh_run(owner, "-N", "-R", f"{workdir}/remote.sock:127.0.0.1:9100")
    assert r.returncode == 255 and "forwarding failed" in r.stderr


def test_another_keys_target_is_a_logged_takeover_attempt(setup, workdir):
    t, owner, shared, *_ = setup
    intruder = keygen(workdir, "intruder")
    t.tunnelctl("add", "other", "--key-file", intruder + ".pub")
    refused_forward(t, intruder, "web:80:127.0.0.1:9100")
    log = t.wait_log("takeover attempt")
    assert f"fingerprint={fingerprint(intruder + '.pub')}" in log
    # The shared authorized_keys key may not take a bound target either.
    refused_forward(t, shared, "web:80:127.0.0.1:9100")
    assert t.entry("web")["state"] == "disconnected"


def test_undeclared_name_is_refused_without_allow_undeclared(setup):
    t, _, shared, *_ = setup
    refused_forward(t, shared, "newhost:80:127.0.0.1:9100")
    t.wait_log("reason=undeclared")
    assert t.entry("newhost") is None


def test_user_flag_refuses_other_login_names(procs, workdir):
    t = Tunneld(procs, workdir, extra=["--user", "tunnel"])
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    r = t.ssh_run(key, "-N", "-R", "web:80:127.0.0.1:1", user="root")
    assert r.returncode == 255 and "Permission denied" in r.stderr
    t.wait_log("reason=user")
    t.ssh(key, "web:80:127.0.0.1:1", user="tunnel")
    mp.wait_until(lambda: t.connected("web"), 10, what="web connected as tunnel")


def test_unauthenticated_connections_per_address_cap_and_recovery(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    idle = []
    try:
        for _ in range(10):  # tunneld's cap on unauthenticated connections from one address
            idle.append(socket.create_connection(("127.0.0.1", t.port), timeout=5))
        mp.wait_until(lambda: t.log().count("connect client=") >= 10, 20, what="10 connections handed over")
        extra = socket.create_connection(("127.0.0.1", t.port), timeout=5)
        try:
            extra.settimeout(5)
            assert extra.recv(100) == b""  # closed at once, before any SSH banner
        finally:
            extra.close()
        t.wait_log("reason=per_source")
        # another address is not affected
        other = socket.create_connection(("127.0.0.1", t.port), timeout=5, source_address=("127.0.0.5", 0))
        with other:
            assert other.recv(100).startswith(b"SSH-2.0-")
    finally:
        for s in idle:
            s.close()
    # The idle connections are gone: their slots came back and a real client from the same address gets in.
    mp.wait_until(lambda: t.log().count("disconnect client=") >= 11, 20, what="idle connections closed")
    t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: t.connected("web"), 10, what="normal client accepted after the storm")


def test_pre_auth_limits_follow_their_flags(procs, workdir):
    """--per-source-max-startups 3 and --max-startups 5:100:8 (refuse every new one from 5 in all on)."""
    t = Tunneld(procs, workdir, extra=["--per-source-max-startups", "3", "--max-startups", "5:100:8"])
    t.start()
    assert "max_startups=5:100:8 per_source_max_startups=3" in t.log()

    def attempt(source):
        s = socket.create_connection(("127.0.0.1", t.port), timeout=5, source_address=(source, 0))
        s.settimeout(5)
        if s.recv(100).startswith(b"SSH-2.0-"):
            return s
        s.close()
        return None

    held = []
    try:
        held += [attempt("127.0.0.1") for _ in range(3)]
        assert all(held)
        assert attempt("127.0.0.1") is None
        t.wait_log("reason=per_source")
        held += [attempt("127.0.0.6"), attempt("127.0.0.7")]
        assert all(held)
        assert attempt("127.0.0.8") is None
        t.wait_log("reason=random_early_drop")
    finally:
        for s in held:
            if s:
                s.close()


def test_garbage_on_the_ssh_port_is_dropped_without_harm(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    payloads = [b"GET / HTTP/1.0\r\n\r\n", b"SSH-2.0-x\r\n" + bytes(range(256)) * 64,
                b"SSH-2.0-x\r\n\x00\x00\xff\xff" + b"A" * 70000]
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
            try:
                s.sendall(payload)
                s.settimeout(5)
                while s.recv(4096):
                    pass
            except OSError:
                pass  # a reset is a fine answer to garbage
    mp.wait_until(lambda: t.log().count("disconnect client=") >= len(payloads), 10, what="garbage sessions closed")
    assert t.proc.poll() is None
    t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: t.connected("web"), 10, what="still serving")
    assert fetch(entry, "/bytes/10") == body(10)
