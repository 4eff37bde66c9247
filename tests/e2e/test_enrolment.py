"""Join tokens with the real clients: `tunnelctl invite` prints a host's setup, and running exactly those lines
enrols the host (OpenSSH via SSH_ASKPASS, dropbear's dbclient, PuTTY's plink), which then reconnects with its key
alone and is scraped through nginx by Prometheus. Every refusal has its own log line and counter, and tells the
client nothing more than "permission denied"."""
import json
import os
import shlex
import shutil
import subprocess
import tempfile

import pytest

import mp
import nginx_harness as h
import ssh_harness as s
from test_prometheus_chain import PAGES, Prometheus

REFUSED = "Permission denied (keyboard-interactive)."


@pytest.fixture
def tunneld(procs, workdir, monkeypatch):
    monkeypatch.setenv("MONITORING_PROXY_REGISTRY_GROUP", h.REGISTRY_GROUP)  # nginx's workers read it
    return s.Tunneld(procs, workdir).start()


def invite(tunneld, name, host_dir, exporter_port=9, *flags):
    r = tunneld.tunnelctl("invite", name, "--proxy", f"127.0.0.1:{tunneld.port}", "--host-key-dir", tunneld.host_keys,
                          "--host-dir", host_dir, "--exporter", f"127.0.0.1:{exporter_port}", "--json", *flags)
    return json.loads(r.stdout)


def run_setup(inv):
    for line in inv["setup"]:
        subprocess.run(["sh", "-c", line], check=True, timeout=30)


def command(line, *extra):
    """A printed `VAR=value ... ssh ARGS` line as (environment, argv), `extra` options put right after ssh."""
    words = shlex.split(line)
    env = {}
    while "=" in words[0]:
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    return env, [words[0], *extra, *words[1:]]


def start_printed(procs, line, *extra, name="ssh"):
    env, argv = command(line, *extra)
    return procs.start(argv, env=env, name=name)


def run_printed(line, *extra, timeout=20):
    env, argv = command(line, *extra)
    return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def unit_command(unit):
    """The unit's Environment= and ExecStart= as (environment, argv)."""
    env, argv = {}, None
    for line in unit.splitlines():
        if line.startswith("Environment="):
            env.update(w.split("=", 1) for w in shlex.split(line[len("Environment="):]))
        if line.startswith("ExecStart="):
            argv = shlex.split(line[len("ExecStart="):])
    return env, argv


def invites(tunneld):
    return {i["name"]: i for i in json.loads(tunneld.tunnelctl("invites", "--json").stdout)}


def keys_of(tunneld, name):
    return json.loads(tunneld.tunnelctl("show", name, "--json").stdout)["keys"]


def enrolments(tunneld, reason=None):
    c = tunneld.counters()
    return c.get(f'enrolments_refused_total{{reason="{reason}"}}', 0) if reason else c.get("enrolments_total", 0)


def status_invitation(nginx, name):
    status = json.loads(nginx.get("/-/status?format=json")[1])
    return next(i for i in status["invitations"] if i["name"] == name)


def test_openssh_enrols_with_the_printed_lines_then_the_key_alone_is_scraped(tunneld, procs, workdir):
    node = procs.start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{mp.free_port()}"],
                       name="node_exporter")
    node_port = int(node.args[1].rsplit(":", 1)[1])
    mp.wait_until(lambda: mp.port_open(node_port), timeout=15, what="node_exporter")
    env = h.Env(workdir, procs)
    env.registry.path = tunneld.registry
    try:
        nginx = env.nginx(server_extra=PAGES).start()
        prometheus = Prometheus(procs, workdir, f"http://127.0.0.1:{nginx.port}/-/sd")
        host = os.path.join(workdir, "host")
        inv = invite(tunneld, "web1", host, node_port, "--label", "env=prod", "--path", "/metrics")
        assert inv["declared"] and inv["uses"] == 1 and inv["token"].startswith("web1.")
        run_setup(inv)
        assert os.stat(os.path.join(host, "join-token")).st_mode & 0o777 == 0o600
        assert os.stat(host).st_mode & 0o777 == 0o700
        fingerprint = s.fingerprint(os.path.join(host, "id_ed25519.pub"))
        secret = inv["token"].split(".")[1]
        listed = invites(tunneld)["web1"]
        assert listed["state"] == "open" and secret not in json.dumps(listed)
        assert status_invitation(nginx, "web1")["state"] == "open"

        client = start_printed(procs, inv["ssh"])
        mp.wait_until(lambda: tunneld.connected("web1"), 15, what="web1 enrolled and connected")
        assert inv["token"] not in " ".join(client.args)  # never on the command line
        assert keys_of(tunneld, "web1") == [fingerprint]
        assert "enrolment accepted client=127.0.0.1:" in tunneld.log() and "target=web1 uses_left=0" in tunneld.log()
        used = invites(tunneld)["web1"]
        assert used["state"] == "spent" and [u["fingerprint"] for u in used["uses"]] == [fingerprint]
        mp.wait_until(lambda: enrolments(tunneld) == 1, 10, what="enrolments_total 1")
        shown = status_invitation(nginx, "web1")
        assert shown["state"] == "spent" and [u["fingerprint"] for u in shown["uses"]] == [fingerprint]
        page = nginx.get("/-/status")[1]
        assert 'data-invite="web1"' in page and fingerprint in page and secret not in page
        mp.wait_until(lambda: prometheus.up("web1") and prometheus.up("web1")[1] == 1, timeout=30,
                      what="Prometheus scrapes web1 through the tunnel")
        assert prometheus.up("web1")[0]["env"] == "prod"

        # The printed unit's command, with autossh as systemd would run it: the key alone, token spent.
        procs.stop(client)
        mp.wait_until(lambda: not tunneld.connected("web1"), 10, what="web1 disconnected")
        unit_env, argv = unit_command(inv["unit"])
        procs.start(argv, env=unit_env, name="autossh")
        mp.wait_until(lambda: tunneld.connected("web1"), 15, what="web1 reconnected by autossh")
        assert tunneld.log().count("enrolment accepted") == 1 and "enrolment refused" not in tunneld.log()
        assert nginx.get("/web1/metrics")[0] == 200
        assert nginx.get("/web1/debug")[0] == 403  # the invitation's --path is the only one served
    finally:
        env.close()


def test_printed_unit_passes_systemd_analyze_verify(tunneld, workdir):
    inv = invite(tunneld, "web1", "/etc/monitoring-proxy")
    assert inv["unit_path"] == "/etc/systemd/system/monitoring-proxy-tunnel.service"
    unit = os.path.join(workdir, "monitoring-proxy-tunnel.service")
    with open(unit, "w") as f:
        f.write(inv["unit"])
    verify = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify.stdout + verify.stderr


def test_printed_known_hosts_line_refuses_another_host_key(tunneld, workdir):
    host = os.path.join(workdir, "host")
    inv = invite(tunneld, "web1", host)
    run_setup(inv)
    old_port = tunneld.port
    tunneld.stop()
    shutil.rmtree(tunneld.host_keys)  # tunneld makes a new host key: what an impostor would present
    tunneld.start()
    # Same pinned key, new port (the harness picks one): the pin now names this tunneld.
    known_hosts = os.path.join(host, "known_hosts")
    with open(known_hosts) as f:
        pinned = f.read().replace(f"]:{old_port} ", f"]:{tunneld.port} ")
    with open(known_hosts, "w") as f:
        f.write(pinned)
    r = run_printed(inv["ssh"].replace(f" -p {old_port} ", f" -p {tunneld.port} "))
    assert r.returncode == 255 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr, r.stderr
    assert invites(tunneld)["web1"]["state"] == "open"  # the token never left the host
    assert "auth partial" not in tunneld.log()


def refused_attempt(tunneld, host, token, source, name="web1"):
    """One connection from `source` presenting `token` with a new key; returns the client's result."""
    os.makedirs(host, exist_ok=True)
    inv_dir = tempfile.mkdtemp(prefix=source + "-", dir=host)
    key = s.keygen(inv_dir, "id_ed25519")
    with open(os.path.join(inv_dir, "token"), "w", opener=lambda p, f: os.open(p, f, 0o600)) as f:
        f.write(token + "\n")
    askpass = os.path.join(inv_dir, "askpass")
    with open(askpass, "w") as f:
        f.write(f"#!/bin/sh\nexec cat {inv_dir}/token\n")
    os.chmod(askpass, 0o700)
    line = (f"SSH_ASKPASS={askpass} SSH_ASKPASS_REQUIRE=force ssh -N -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -i {key} -o KbdInteractiveAuthentication=yes "
            f"-o PreferredAuthentications=publickey,keyboard-interactive -p {tunneld.port} "
            f"-R {name}:80:127.0.0.1:9 monitoring@127.0.0.1")
    return run_printed(line, "-o", f"BindAddress={source}", "-o", "NumberOfPasswordPrompts=1"), key


def test_every_refusal_is_logged_counted_and_looks_the_same_to_the_client(tunneld, procs, workdir):
    host = os.path.join(workdir, "hosts")
    good = invite(tunneld, "web1", os.path.join(workdir, "web1"))
    secret_of_web1 = good["token"].split(".", 1)[1]
    other_secret = invite(tunneld, "web9", os.path.join(workdir, "web9"))["token"].split(".", 1)[1]
    expired = invite(tunneld, "web2", os.path.join(workdir, "web2"), 9, "--ttl", "1s")
    revoked = invite(tunneld, "web3", os.path.join(workdir, "web3"))
    assert "revoked the invitation for web3" in tunneld.tunnelctl("invite", "rm", "web3").stdout
    spent = invite(tunneld, "web4", os.path.join(workdir, "web4"))
    run_setup(spent)
    first = start_printed(procs, spent["ssh"])
    mp.wait_until(lambda: tunneld.connected("web4"), 15, what="web4 enrolled")
    mp.wait_until(lambda: invites(tunneld)["web2"]["state"] == "expired", 5, what="web2's invitation expired")

    cases = [  # (reason, token, target the client asks for)
        ("wrong_token", "web1." + other_secret, "web1"),
        ("unknown_name", "nosuch." + secret_of_web1, "nosuch"),
        ("malformed", "not a token", "web1"),
        ("expired", expired["token"], "web2"),
        ("revoked", revoked["token"], "web3"),
        ("spent", spent["token"], "web4"),  # the same token replayed by another key
    ]
    stderr = {}
    for i, (reason, token, target) in enumerate(cases):
        r, key = refused_attempt(tunneld, host, token, f"127.0.0.{10 + i}", target)
        assert r.returncode == 255, (reason, r.stderr)
        stderr[reason] = r.stderr.strip().splitlines()[-1].split(": ", 1)[1]
        log = tunneld.wait_log(f"enrolment refused client=127.0.0.{10 + i}:")
        assert f"reason={reason}" in log.split(f"enrolment refused client=127.0.0.{10 + i}:")[1].splitlines()[0]
        mp.wait_until(lambda: enrolments(tunneld, reason) == 1, 10, what=f"enrolments_refused_total {reason}")
        assert s.fingerprint(key + ".pub") not in json.dumps(tunneld.ls())
    assert set(stderr.values()) == {REFUSED}, stderr  # whether a name exists is never told
    assert keys_of(tunneld, "web1") == [] and keys_of(tunneld, "web3") == []
    assert len(keys_of(tunneld, "web4")) == 1 and tunneld.connected("web4")
    assert enrolments(tunneld) == 1
    procs.stop(first)

    # Per source address: 5 attempts at once, then one every 12 s.
    for attempt in range(8):
        refused_attempt(tunneld, host, "web1." + other_secret, "127.0.0.50")
        if "reason=rate_limited" in tunneld.log():
            break
    assert attempt == 5 and "enrolment refused client=127.0.0.50:" in tunneld.log()
    mp.wait_until(lambda: enrolments(tunneld, "rate_limited") == 1, 10, what="rate_limited counted")
    assert enrolments(tunneld, "wrong_token") == 6


def enrol_hosts(procs, inv, base, count, source_start):
    """`count` hosts (each its own key, copied from the printed setup) run the printed ssh line at once."""
    first, printed_dir = os.path.join(base, "h0"), inv["setup"][0].split()[-1]
    run_setup({"setup": [line.replace(printed_dir, first) for line in inv["setup"]]})
    line0 = inv["ssh"].replace(printed_dir, first)
    dirs = [os.path.join(base, f"h{i}") for i in range(count)]
    for d in dirs[1:]:  # every host ready before the first starts: they race for real
        shutil.copytree(first, d)
        for f in ("id_ed25519", "id_ed25519.pub"):
            os.unlink(os.path.join(d, f))
        s.keygen(d, "id_ed25519")
    clients = [start_printed(procs, line0.replace(first, d), "-o", f"BindAddress=127.0.0.{source_start + i}",
                             "-o", "NumberOfPasswordPrompts=1", name=f"ssh-{os.path.basename(base)}{i}")
               for i, d in enumerate(dirs)]
    return clients, [s.fingerprint(os.path.join(d, "id_ed25519.pub")) for d in dirs]


def test_a_single_use_token_used_concurrently_binds_exactly_one_key(tunneld, procs, workdir):
    inv = invite(tunneld, "web1", os.path.join(workdir, "printed"))
    clients, fingerprints = enrol_hosts(procs, inv, os.path.join(workdir, "hosts"), 4, 20)
    mp.wait_until(lambda: sum(c.poll() is not None for c in clients) == 3 and tunneld.connected("web1"), 20,
                  what="three clients refused, one connected")
    assert len(keys_of(tunneld, "web1")) == 1
    # Each loser is refused once: as spent after its token prompt, or (once the only invitation was spent) as an
    # unknown key before any prompt. A spent refusal also ends in "auth refused", so count per client address.
    log = tunneld.log()
    assert log.count("enrolment accepted") == 1
    winner = [i for i, c in enumerate(clients) if c.poll() is None]
    assert len(winner) == 1
    for i in set(range(4)) - set(winner):
        assert log.count(f"auth refused client=127.0.0.{20 + i}:") == 1, log
    assert keys_of(tunneld, "web1") == [fingerprints[winner[0]]]


def start_printed_shell_line(procs, line, program, name):
    """A printed shell line run as printed, `exec` put before the program so that the pid stopped is its own."""
    padded = " " + line
    assert f" {program} " in padded, line
    return procs.start(["sh", "-c", padded.replace(f" {program} ", f" exec {program} ", 1)], name=name)


@pytest.mark.parametrize("client", ["dbclient", "plink"])
def test_dropbear_and_putty_enrol_with_the_printed_lines_then_reconnect_with_the_key_alone(tunneld, procs, workdir,
                                                                                          client):
    name = f"web-{client}"
    inv = invite(tunneld, name, os.path.join(workdir, client))
    lines = inv[client]
    for line in lines["setup"]:
        subprocess.run(["sh", "-c", line], check=True, timeout=30, capture_output=True)
    first = start_printed_shell_line(procs, lines["command"], client, f"{client}-enrol")
    mp.wait_until(lambda: tunneld.connected(name), 15, what=f"{client} enrolled with the printed line")
    assert len(keys_of(tunneld, name)) == 1
    procs.stop(first)
    mp.wait_until(lambda: not tunneld.connected(name), 10, what=f"{client} gone")
    # The same line again: the key is bound now, the token (already spent) is never asked for.
    again = start_printed_shell_line(procs, lines["command"], client, f"{client}-again")
    mp.wait_until(lambda: tunneld.connected(name), 15, what=f"{client} reconnected with its key alone")
    assert again.poll() is None
    log = tunneld.log()
    assert log.count("enrolment accepted") == 1 and "enrolment refused" not in log, log
    assert invites(tunneld)[name]["state"] == "spent"


def test_dbclient_and_plink_lines_pin_the_host_key(tunneld, procs, workdir):
    """With another host key in the printed pins, neither client connects (nor enrols)."""
    other = os.path.join(workdir, "other-host-keys")
    os.makedirs(other)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(other, "ssh_host_ed25519_key")],
                   check=True)
    for client in ["dbclient", "plink"]:
        r = tunneld.tunnelctl("invite", f"web-{client}", "--proxy", f"127.0.0.1:{tunneld.port}", "--host-key-dir",
                              other, "--host-dir", os.path.join(workdir, client), "--exporter", "127.0.0.1:9", "--json")
        lines = json.loads(r.stdout)[client]
        for line in lines["setup"]:
            subprocess.run(["sh", "-c", line], check=True, timeout=30, capture_output=True)
        out = subprocess.run(["sh", "-c", lines["command"]], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        assert out.returncode != 0, (client, out.stderr)
        assert "host key" in out.stderr.lower() or "hostkey" in out.stderr.lower(), (client, out.stderr)
    assert "enrolment accepted" not in tunneld.log() and enrolments(tunneld) == 0


def test_invite_of_a_declared_target_keeps_it_and_uses_n_binds_n_keys(tunneld, procs, workdir):
    bound = s.keygen(workdir, "already-bound")
    tunneld.tunnelctl("add", "web5", "--label", "team=db", "--key-file", bound + ".pub")
    inv = invite(tunneld, "web5", os.path.join(workdir, "web5"), 9, "--uses", "2", "--label", "env=prod",
                 "--path", "/metrics")
    assert inv["declared"] is False and inv["uses"] == 2
    shown = json.loads(tunneld.tunnelctl("show", "web5", "--json").stdout)
    assert shown["labels"] == {"team": "db", "env": "prod"} and shown["paths"] == ["/metrics"]
    assert shown["keys"] == [s.fingerprint(bound + ".pub")]  # inviting adds keys, it never drops one
    text = tunneld.tunnelctl("invite", "web5", "--proxy", "127.0.0.1:1", "--host-key-dir", tunneld.host_keys).stdout
    assert text.startswith("invited existing target web5; the token works 1 time until")
    inv = invite(tunneld, "web5", os.path.join(workdir, "web5"), 9, "--uses", "2")  # replaces the one just printed

    # Three hosts with the 2-use token at once: two bind (and then take the name over from each other, as two
    # hosts serving one name do), the third is refused: spent, or an unknown key once no invitation is open.
    clients, fingerprints = enrol_hosts(procs, inv, os.path.join(workdir, "fleet"), 3, 60)
    mp.wait_until(lambda: tunneld.log().count("enrolment accepted") == 2 and
                  sum(f"auth refused client=127.0.0.{60 + i}:" in tunneld.log() for i in range(3)) == 1, 20,
                  what="two hosts enrolled, one refused")
    for c in clients:
        procs.stop(c)
    won = {fp for i, fp in enumerate(fingerprints) if f"auth refused client=127.0.0.{60 + i}:" not in tunneld.log()}
    assert len(won) == 2 and set(keys_of(tunneld, "web5")) == won | {s.fingerprint(bound + ".pub")}
    listed = invites(tunneld)["web5"]
    assert listed["state"] == "spent" and listed["uses_left"] == 0 and {u["fingerprint"] for u in listed["uses"]} == won
    assert tunneld.log().count("enrolment accepted") == 2
    shown = json.loads(tunneld.tunnelctl("show", "web5", "--json").stdout)
    assert shown["labels"] == {"team": "db", "env": "prod"} and shown["paths"] == ["/metrics"]


def test_inviting_again_replaces_the_token(tunneld, procs, workdir):
    old = invite(tunneld, "web6", os.path.join(workdir, "old"))
    new = invite(tunneld, "web6", os.path.join(workdir, "new"))
    assert old["token"] != new["token"] and new["declared"] is False
    r, key = refused_attempt(tunneld, os.path.join(workdir, "hosts"), old["token"], "127.0.0.70", "web6")
    assert r.returncode == 255 and r.stderr.strip().splitlines()[-1].endswith(REFUSED), r.stderr
    log = tunneld.wait_log("enrolment refused client=127.0.0.70:")
    assert "reason=wrong_token" in log.split("enrolment refused client=127.0.0.70:")[1].splitlines()[0]
    run_setup(new)
    start_printed(procs, new["ssh"])
    mp.wait_until(lambda: tunneld.connected("web6"), 15, what="web6 enrolled with the new token")
    assert keys_of(tunneld, "web6") == [s.fingerprint(os.path.join(workdir, "new", "id_ed25519.pub"))]


def test_invite_refuses_bad_flags_and_changes_nothing(tunneld, workdir):
    base = ["invite", "web1", "--proxy", "127.0.0.1:2222", "--host-key-dir", tunneld.host_keys]
    for flags, status, message in [
        (["--ttl", "0"], 1, 'invalid --ttl "0"'),
        (["--ttl", "366d"], 1, 'invalid --ttl "366d"'),
        (["--uses", "0"], 1, 'invalid --uses "0"'),
        (["--proxy", "a b"], 1, 'invalid --proxy "a b"'),
        (["--host-dir", "relative"], 1, "--host-dir must be an absolute path"),
        (["--label", "__x=1"], 2, "reserved by Prometheus"),
        (["--host-key-dir", workdir], 2, f"no ssh_host_*_key.pub in {workdir}"),
    ]:
        r = tunneld.tunnelctl(*base, *flags, check=False)
        assert r.returncode == status and message in r.stderr, (flags, r.stderr)
    assert tunneld.entry("web1") is None and invites(tunneld) == {}
    r = tunneld.tunnelctl("invite", "rm", "web1", check=False)
    assert r.returncode == 2 and 'no invitation for "web1"' in r.stderr
    text = tunneld.tunnelctl(*base, "--ttl", "30m").stdout  # the human form prints the same lines
    for expected in ["the token works 1 time until", "ssh-keygen -q -t ed25519 -N '' -C web1 -f "
                     "/etc/monitoring-proxy/id_ed25519", "printf '[127.0.0.1]:2222 ssh-ed25519 ",
                     "cat > /etc/systemd/system/monitoring-proxy-tunnel.service <<'EOF'\n[Unit]\n",
                     "SSH_ASKPASS=/etc/monitoring-proxy/askpass SSH_ASKPASS_REQUIRE=force ssh -N ",
                     "-p 2222 -R web1:80:localhost:9100 monitoring@127.0.0.1\n"]:
        assert expected in text, expected
    assert invites(tunneld)["web1"]["state"] == "open"
