"""Sessions coming and going: takeover on reconnect, dead clients, signals, restarts, self-registration."""
import os
import signal

import pytest

import mp
from ssh_harness import Tunneld, body, endpoint, fetch, fingerprint, keygen


def test_client_exit_removes_the_entry_at_once(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    client = t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: t.connected("web"), 10, what="connected")
    procs.stop(client)
    mp.wait_until(lambda: t.entry("web")["state"] == "disconnected", 2, what="entry removed")
    log = t.wait_log("disconnect client=")
    assert "forward removed" in log and "reason=\"session end\"" in log


def test_reconnect_takes_over_and_old_session_closes(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    old = t.ssh(key, f"web:80:127.0.0.1:{exporter.port}", name="old")
    first = mp.wait_until(lambda: t.connected("web"), 10, what="first session")
    # The old client is frozen, as after a network drop: the new session must win at once anyway.
    os.kill(old.pid, signal.SIGSTOP)
    try:
        t.ssh(key, f"web:80:127.0.0.1:{exporter.port}", name="new")
        second = mp.wait_until(lambda: (e := t.connected("web")) and e["client"] != first["client"] and e, 10,
                               what="takeover")
        assert fetch(second, "/bytes/150000") == body(150000)
        log = t.wait_log("takeover client=")
        assert f"previous_client={first['client']}" in log
        t.wait_log("all forwards taken over")
        mp.wait_until(lambda: t.counters().get('takeovers_total{tunnel="web"}', 0) == 1, 5, what="counter")
    finally:
        os.kill(old.pid, signal.SIGCONT)
    mp.wait_until(lambda: old.poll() is not None, 10, what="old client exits")
    assert t.connected("web")["client"] == second["client"]


def test_stopped_client_is_dropped_within_keepalive_times_max(procs, workdir, exporter):
    t = Tunneld(procs, workdir, extra=["--keepalive", "1", "--keepalive-max", "2"])
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    client = t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: t.connected("web"), 10, what="connected")
    os.kill(client.pid, signal.SIGSTOP)
    try:
        # keepalive 1 s x 2 unanswered: dropped after about 3 s; allow scheduling slack.
        mp.wait_until(lambda: t.entry("web")["state"] == "disconnected", 6, what="stopped client dropped")
        log = t.wait_log("no answer to 2 keepalives")
        assert "disconnect client=" in log
        mp.wait_until(lambda: t.counters().get("keepalive_drops_total", 0) == 1, 5, what="counter")
    finally:
        os.kill(client.pid, signal.SIGCONT)


def test_idle_healthy_client_survives_keepalives(procs, workdir, exporter):
    t = Tunneld(procs, workdir, extra=["--keepalive", "1", "--keepalive-max", "1"])
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: t.connected("web"), 10, what="connected")
    with pytest.raises(AssertionError):  # nothing may drop it for 4 keepalive periods
        mp.wait_until(lambda: "disconnect client=" in t.log(), 4, what="no drop")
    assert t.connected("web")


def test_sigterm_leaves_no_entry(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.tunnelctl("add", "db", "--key-file", key + ".pub")
    t.start()
    t.ssh(key, f"web:80:127.0.0.1:{exporter.port}", f"db:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: t.connected("web") and t.connected("db"), 10, what="connected")
    assert t.stop(signal.SIGTERM) == 0
    assert all(e["state"] == "disconnected" for e in t.ls())
    assert "stopped" in t.log()
    assert t.counters().get("sessions_total") == 1


def test_sigkill_then_restart_sweeps_stale_entries(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    client = t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: t.connected("web"), 10, what="connected")
    t.stop(signal.SIGKILL)
    procs.stop(client)
    assert t.entry("web")["state"] == "connected"  # stale: nobody removed it
    t.start()
    log = t.wait_log("swept stale tunnel target=web")
    assert t.entry("web")["state"] == "disconnected", log
    t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: t.connected("web"), 10, what="reconnected")
    assert fetch(entry, "/bytes/1") == body(1)


def test_allow_undeclared_self_registers_bound_to_the_key(procs, workdir, exporter):
    key = keygen(workdir, "shared")
    ak = os.path.join(workdir, "authorized_keys")
    with open(ak, "w") as f:
        f.write(open(key + ".pub").read())
    t = Tunneld(procs, workdir, extra=["--authorized-keys", ak, "--allow-undeclared"])
    t.start()
    t.ssh(key, f"brand-new:80:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: t.connected("brand-new"), 10, what="self-registered")
    assert entry["origin"] == "self-registered" or "self" in entry["origin"]
    assert entry["keys"] == [fingerprint(key + ".pub")]
    assert fetch(entry, "/bytes/100") == body(100)
    t.wait_log("target self-registered target=brand-new")


def test_sighup_rereads_authorized_keys(procs, workdir, exporter):
    key = keygen(workdir, "late")
    ak = os.path.join(workdir, "authorized_keys")
    open(ak, "w").close()
    t = Tunneld(procs, workdir, extra=["--authorized-keys", ak])
    t.tunnelctl("add", "shared-target")
    t.start()
    r = t.ssh_run(key, "-N")
    assert r.returncode == 255 and "Permission denied" in r.stderr
    with open(ak, "w") as f:
        f.write(open(key + ".pub").read())
    os.kill(t.proc.pid, signal.SIGHUP)
    t.wait_log("keys=1")
    t.ssh(key, f"shared-target:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: t.connected("shared-target"), 10, what="accepted after SIGHUP")


def test_cancel_forward_removes_the_entry_and_forward_can_return(procs, workdir, exporter):
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    control = os.path.join(workdir, "ctl")
    spec = f"web:80:127.0.0.1:{exporter.port}"
    t.ssh(key, spec, extra=["-M", "-S", control])
    mp.wait_until(lambda: t.connected("web"), 10, what="connected")
    mp.wait_until(lambda: os.path.exists(control), 10, what="control socket")
    r = t.ssh_run(key, "-S", control, "-O", "cancel", "-R", spec)
    assert r.returncode == 0, r.stderr
    mp.wait_until(lambda: t.entry("web")["state"] == "disconnected", 5, what="cancelled")
    assert 'reason=cancel' in t.log()
    r = t.ssh_run(key, "-S", control, "-O", "forward", "-R", spec)
    assert r.returncode == 0, r.stderr
    entry = mp.wait_until(lambda: t.connected("web"), 10, what="forward again")
    assert fetch(entry, "/bytes/1000") == body(1000)


def test_scraper_reset_while_channel_opens_does_not_spin(procs, workdir, exporter):
    import socket
    import struct
    t = Tunneld(procs, workdir)
    key = keygen(workdir, "k")
    t.tunnelctl("add", "web", "--key-file", key + ".pub")
    t.start()
    client = t.ssh(key, f"web:80:127.0.0.1:{exporter.port}")
    entry = mp.wait_until(lambda: t.connected("web"), 10, what="connected")
    os.kill(client.pid, signal.SIGSTOP)  # the channel open will never be answered
    try:
        s = socket.create_connection(endpoint(entry), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST while tunneld waits for the channel
        # A spinning tunneld would use about as much CPU as a spinner beside it (share ~1), an idle one ~0.
        share = mp.cpu_share_beside_a_spinner(t.proc.pid)
        assert share < 0.3, f"tunneld used {share:.0%} of the CPU a spinning process got meanwhile"
    finally:
        os.kill(client.pid, signal.SIGCONT)
