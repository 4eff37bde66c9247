"""tunneld end to end with the real OpenSSH client: forwards of every kind carry exact bytes."""
import socket
import subprocess

import pytest

import mp
from ssh_harness import Tunneld, body, endpoint, fetch, fingerprint, keygen


@pytest.fixture
def tunneld(procs, workdir):
    return Tunneld(procs, workdir)


def test_help_and_version_document_every_flag():
    out = subprocess.run([mp.program("tunneld"), "--help"], capture_output=True, text=True, check=True).stdout
    # --help and README's tunneld synopsis and flag table name the same flags: one cannot gain or lose one alone
    synopsis, table = mp.readme_reference("tunneld")
    assert mp.long_flags(out) == mp.long_flags("\n".join(synopsis + table)) | {"--help", "--version"}
    version = subprocess.run([mp.program("tunneld"), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("tunneld ")
    bad = subprocess.run([mp.program("tunneld"), "--port-range", "9-1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--port-range" in bad.stderr


def test_generates_host_key_and_logs_fingerprint_like_ssh_keygen(tunneld):
    tunneld.start()
    pub = tunneld.host_keys + "/ssh_host_ed25519_key"
    import os
    assert oct(os.stat(pub).st_mode & 0o777) == "0o600"
    log = tunneld.log()
    assert "host key generated" in log
    assert f"fingerprint={fingerprint(pub + '.pub')}" in log


def test_named_forward_relays_exact_bytes(tunneld, workdir, exporter):
    key = keygen(workdir, "web1")
    tunneld.tunnelctl("add", "web1", "--key-file", key + ".pub")
    tunneld.start()
    tunneld.ssh(key, f"web1:80:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: tunneld.connected("web1"), 10, what="web1 connected")
    assert entry["fingerprint"] == fingerprint(key + ".pub")
    assert entry["client"].startswith("127.0.0.1:")
    port = entry["port"]
    assert tunneld.port_range[0] <= port <= tunneld.port_range[1]
    for size in (1, 150 * 1024, 50 * 1024 * 1024):
        assert fetch(entry, f"/bytes/{size}", timeout=60) == body(size), size
    log = tunneld.log()
    assert "forward added" in log and "target=web1" in log


def test_numbered_forward_uses_the_declared_fixed_port(tunneld, workdir, exporter):
    key = keygen(workdir, "db1")
    fixed = tunneld.port_range[0] + 5
    tunneld.tunnelctl("add", "db1", "--port", str(fixed), "--key-file", key + ".pub")
    tunneld.start()
    tunneld.ssh(key, f"{fixed}:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: tunneld.connected("db1"), 10, what="db1 connected")
    assert entry["port"] == fixed
    assert fetch(fixed, "/bytes/150000") == body(150000)


def test_port_zero_forward_reports_allocated_port(tunneld, workdir, exporter):
    key = keygen(workdir, "solo")
    tunneld.tunnelctl("add", "solo", "--key-file", key + ".pub")
    tunneld.start()
    client = tunneld.ssh(key, f"0:127.0.0.1:{exporter.port}", extra=["-o", "LogLevel=INFO"])
    entry = mp.wait_until(lambda: tunneld.connected("solo"), 10, what="solo connected")
    mp.wait_until(lambda: "Allocated port" in mp.Processes.log_text(client), 10, what="client prints port")
    assert f"Allocated port {entry['port']}" in mp.Processes.log_text(client)
    assert fetch(entry, "/bytes/1") == body(1)


def test_several_forwards_in_one_session(tunneld, workdir, exporter):
    key = keygen(workdir, "host")
    for name in ("node", "app", "db"):
        tunneld.tunnelctl("add", f"host-{name}", "--key-file", key + ".pub")
    tunneld.start()
    tunneld.ssh(key, *[f"host-{n}:80:127.0.0.1:{exporter.port}" for n in ("node", "app", "db")])
    entries = [mp.wait_until(lambda n=n: tunneld.connected(f"host-{n}"), 10, what=n) for n in ("node", "app", "db")]
    assert len({e["port"] for e in entries}) == 3
    assert len({e["address"] for e in entries}) == 3  # each forward has a loopback address of its own
    assert len({e["client"] for e in entries}) == 1
    for e in entries:
        assert fetch(e, "/bytes/4096") == body(4096)


def test_bind_address_any_still_listens_on_loopback_only(tunneld, workdir, exporter):
    key = keygen(workdir, "anyaddr")
    fixed = tunneld.port_range[0] + 7
    tunneld.tunnelctl("add", "anyaddr", "--port", str(fixed), "--key-file", key + ".pub")
    tunneld.start()
    tunneld.ssh(key, f"0.0.0.0:{fixed}:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: tunneld.connected("anyaddr"), 10, what="anyaddr connected")
    out = subprocess.run(["ss", "-Hltn", f"sport = :{fixed}"], capture_output=True, text=True).stdout
    listeners = [line.split()[3] for line in out.splitlines() if line.strip()]
    # The forward's own address, and 127.0.0.1 for the declared fixed port: loopback only.
    assert sorted(listeners) == sorted([f"{entry['address']}:{fixed}", f"127.0.0.1:{fixed}"]), listeners
    assert entry["address"].startswith("127.") and entry["address"] != "127.0.0.1"
    assert fetch(fixed, "/bytes/10") == body(10)


def test_exporter_down_closes_the_scrape_connection(tunneld, workdir):
    key = keygen(workdir, "down")
    tunneld.tunnelctl("add", "down", "--key-file", key + ".pub")
    tunneld.start()
    tunneld.ssh(key, f"down:80:127.0.0.1:{mp.free_port()}")
    entry = mp.wait_until(lambda: tunneld.connected("down"), 10, what="down connected")
    with socket.create_connection(endpoint(entry), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            data = s.recv(100)
        except ConnectionResetError:  # closed with our request unread: a reset is as good as EOF
            data = b""
        assert data == b""  # the client refused the channel: connection closed, nothing relayed
    log = tunneld.wait_log("relay closed")
    assert "target=down" in log and "refused the channel" in log, log


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_ecdsa_and_rsa_client_keys(tunneld, workdir, exporter, kind):
    key = keygen(workdir, kind, kind=kind)
    tunneld.tunnelctl("add", f"{kind}-host", "--key-file", key + ".pub")
    tunneld.start()
    tunneld.ssh(key, f"{kind}-host:80:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: tunneld.connected(f"{kind}-host"), 10, what=f"{kind} key accepted")
    assert entry["fingerprint"] == fingerprint(key + ".pub")
    assert fetch(entry, "/bytes/2000") == body(2000)


def test_existing_host_keys_are_used_and_their_fingerprints_logged(tunneld, workdir, exporter):
    import os
    os.makedirs(tunneld.host_keys)
    for kind in ("ecdsa", "rsa"):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f",
                        os.path.join(tunneld.host_keys, f"ssh_host_{kind}_key")], check=True)
    key = keygen(workdir, "k")
    tunneld.tunnelctl("add", "web", "--key-file", key + ".pub")
    tunneld.start()
    log = tunneld.log()
    assert "host key generated" not in log
    for kind in ("ecdsa", "rsa"):
        assert f"fingerprint={fingerprint(os.path.join(tunneld.host_keys, f'ssh_host_{kind}_key.pub'))}" in log
    # The client gets the ECDSA host key when it asks for it, and pins it like known_hosts would.
    known = os.path.join(workdir, "known_hosts")
    pub = open(os.path.join(tunneld.host_keys, "ssh_host_ecdsa_key.pub")).read().split()
    with open(known, "w") as f:
        f.write(f"[127.0.0.1]:{tunneld.port} {pub[0]} {pub[1]}\n")
    tunneld.ssh(key, f"web:80:127.0.0.1:{exporter.port}",
                extra=["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                       "-o", "HostKeyAlgorithms=ecdsa-sha2-nistp256"])
    mp.wait_until(lambda: tunneld.connected("web"), 10, what="connected with pinned ECDSA host key")


# What the path through tunneld holds for a reader that stops reading (libssh's channel window alone is 1.28 MB):
# the 1 MB case shows it, its exporter finishes before the reader takes a byte.
HELD_FOR_THE_READER = 1000 * 1000


@pytest.mark.parametrize("size", [HELD_FOR_THE_READER, 8 * 1024 * 1024])  # within the window, and beyond
def test_slow_reader_gets_every_byte_after_the_exporter_closed(tunneld, workdir, exporter, size):
    """The exporter finishes and the client sends EOF and close while tunneld still holds undelivered data:
    flow control must keep it, and the close must wait until the reader has everything."""
    key = keygen(workdir, "slow")
    tunneld.tunnelctl("add", "slow", "--key-file", key + ".pub")
    tunneld.start()
    tunneld.ssh(key, f"slow:80:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: tunneld.connected("slow"), 10, what="connected")
    finished_before = exporter.finished
    response = b""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(endpoint(entry))
        s.sendall(f"GET /bytes/{size} HTTP/1.0\r\n\r\n".encode())
        # The reader takes all but what the path holds, then stops until the exporter has written its last
        # byte and hung up: everything it reads after that came out of tunneld's buffers, after the close.
        while len(response) < size - HELD_FOR_THE_READER:
            data = s.recv(min(65536, size - HELD_FOR_THE_READER - len(response)))
            assert data, f"closed after {len(response)} bytes"
            response += data
        mp.wait_until(lambda: exporter.finished == finished_before + 1, 30,
                      what=f"the exporter finished while the reader held back {size - len(response)} bytes")
        while data := s.recv(65536):
            response += data
    assert response.split(b"\r\n\r\n", 1)[1] == body(size)


def test_a_schema_1_registry_is_refused_until_migrated_then_served(tunneld, workdir, exporter):
    """A registry of the previous schema version (no fixed-port index): tunneld refuses to start and names the
    one command that upgrades it; `tunnelctl migrate` keeps the target, and its numbered forward is served."""
    key = keygen(workdir, "db1")
    fixed = tunneld.port_range[0] + 5
    tunneld.tunnelctl("add", "db1", "--port", str(fixed), "--key-file", key + ".pub", "--label", "env=prod")
    subprocess.run([mp.program("mp-registry-fixture"), "--registry", tunneld.registry, "schema-1", "-"], check=True)

    refused = subprocess.run([mp.program("tunneld"), "--listen", f"127.0.0.1:{mp.free_port()}", "--registry",
                              tunneld.registry, "--host-key-dir", tunneld.host_keys], capture_output=True, text=True,
                             timeout=20)
    assert refused.returncode == 2, refused
    assert "schema version 1" in refused.stderr and f"tunnelctl --registry {tunneld.registry} migrate" in refused.stderr
    assert tunneld.tunnelctl("ls", check=False).returncode == 3

    out = tunneld.tunnelctl("migrate").stdout
    assert "upgraded from schema version 1 to 2" in out, out
    assert "already has schema version 2" in tunneld.tunnelctl("migrate").stdout  # running it again: no change
    entry = tunneld.entry("db1")
    assert entry["fixed_port"] == fixed and entry["labels"] == {"env": "prod"}, entry

    tunneld.start()
    tunneld.ssh(key, f"{fixed}:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: tunneld.connected("db1"), 10, what="db1 connected through its fixed port")
    assert fetch(fixed, "/bytes/100") == body(100)
