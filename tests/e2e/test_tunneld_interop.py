"""Other SSH clients a monitored host may run: dropbear's dbclient and PuTTY's plink."""
import subprocess

import mp
from ssh_harness import Tunneld, body, fetch, fingerprint, keygen


def test_dropbear_dbclient_named_and_numbered_forwards(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "db")
    subprocess.run(["dropbearconvert", "openssh", "dropbear", key, key + ".dropbear"], check=True,
                   capture_output=True)
    fixed = t.port_range[0] + 3
    t.tunnelctl("add", "dropbear-host", "--key-file", key + ".pub")
    t.tunnelctl("add", "dropbear-fixed", "--port", str(fixed), "--key-file", key + ".pub")
    t.start()
    procs.start(["dbclient", "-N", "-y", "-y", "-i", key + ".dropbear", "-p", str(t.port),
                 "-R", f"dropbear-host:80:127.0.0.1:{exporter.port}",
                 "-R", f"{fixed}:127.0.0.1:{exporter.port}", "tunnel@127.0.0.1"], name="dbclient")
    named = mp.wait_until(lambda: t.connected("dropbear-host"), 10, what="dbclient named forward")
    mp.wait_until(lambda: t.connected("dropbear-fixed"), 10, what="dbclient numbered forward")
    assert named["fingerprint"] == fingerprint(key + ".pub")
    assert fetch(named, "/bytes/150000") == body(150000)
    assert fetch(fixed, "/bytes/1") == body(1)


def test_putty_plink_named_forward(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "putty")
    subprocess.run(["puttygen", key, "-O", "private", "-o", key + ".ppk"], check=True, capture_output=True)
    t.tunnelctl("add", "putty-host", "--key-file", key + ".pub")
    t.start()
    hostkey = fingerprint(t.host_keys + "/ssh_host_ed25519_key.pub")
    procs.start(["plink", "-batch", "-ssh", "-P", str(t.port), "-hostkey", hostkey, "-i", key + ".ppk", "-N",
                 "-R", f"putty-host:80:127.0.0.1:{exporter.port}", "tunnel@127.0.0.1"], name="plink")
    entry = mp.wait_until(lambda: t.connected("putty-host"), 10, what="plink forward")
    assert fetch(entry, "/bytes/150000") == body(150000)
    assert fetch(entry, "/bytes/5000000", timeout=60) == body(5000000)
