"""The Debian packages, for real: CPack makes the .debs from the build tree, apt installs them into a
fresh bookworm root (mmdebstrap, pulling nginx and the libraries from Debian's registry), tunneld runs from the
installed unit's own ExecStart and User=, Debian's nginx loads the packaged module with the sample site, and an
OpenSSH client's `ssh -N -R` is scraped through it byte for byte; then upgrade, remove, reinstall and purge, each
checked for what it leaves behind. lintian must find no error."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

import debian_root
import mp
import ssh_harness
from debian_root import Root, Unit

STATE = "/var/lib/monitoring-proxy"
SERVICE_USER = "monitoring-proxy"
UNIT = "/lib/systemd/system/tunneld.service"
DEFAULTS = "/etc/default/monitoring-proxy"
SITE = "/etc/nginx/sites-available/monitoring-proxy"
SITE_LINK = "/etc/nginx/sites-enabled/monitoring-proxy"
MODULE = "/usr/lib/nginx/modules/ngx_http_tunnel_module.so"
MODULE_CONF = "/usr/share/nginx/modules-available/mod-http-tunnel.conf"
MODULE_LINK = "/etc/nginx/modules-enabled/50-mod-http-tunnel.conf"
UNIT_ENABLED = "/etc/systemd/system/multi-user.target.wants/tunneld.service"
HOST_KEY = f"{STATE}/host-keys/ssh_host_ed25519_key"
PACKAGES = ("monitoring-proxy", "libnginx-mod-http-tunnel")
SCRAPE = 150_000  # bytes: more than one SSH window, so the relay is exercised
FIGURES = os.path.join(mp.BUILD_DIR, "debian-packages.json")


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """{1: {package: .deb}, 2: {...}}: the tree packaged twice, the second a rebuild with a higher revision."""
    if debian_root.sanitized_build(mp.BUILD_DIR):
        pytest.skip("the packages are made from a release build; this build is sanitized (MP_SANITIZE=ON)")
    out = tmp_path_factory.mktemp("debs")
    built = {release: debian_root.build_packages(mp.BUILD_DIR, str(out / f"r{release}"), release)
             for release in (1, 2)}
    for release, debs in built.items():
        assert sorted(debs) == sorted(PACKAGES), f"revision {release}: {debs}"
    return built


@pytest.fixture
def root(workdir, procs):
    r = Root(workdir)
    yield r
    procs.stop_all()  # before the root goes: nothing may keep running inside it
    r.close()


def record(**figures):
    old = {}
    if os.path.exists(FIGURES):
        with open(FIGURES) as f:
            old = json.load(f)
    old.update(figures)
    with open(FIGURES, "w") as f:
        json.dump(old, f, indent=2, sort_keys=True)


def test_lintian_reports_no_errors(packages):
    for deb in packages[1].values():
        r = subprocess.run(["lintian", "--fail-on", "error", deb], capture_output=True, text=True)
        errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
        assert r.returncode == 0 and not errors, f"lintian {deb}:\n{r.stdout}\n{r.stderr}"


def test_module_depends_on_the_nginx_abi_it_was_built_for(packages):
    provides = subprocess.run(["dpkg-query", "-W", "-f=${Provides}", "nginx"], capture_output=True, text=True,
                              check=True).stdout
    abi = re.search(r"nginx-abi-[^,\s]+", provides).group(0)
    depends = subprocess.run(["dpkg-deb", "-f", packages[1]["libnginx-mod-http-tunnel"], "Depends"],
                             capture_output=True, text=True, check=True).stdout
    assert abi in [d.strip() for d in depends.split(",")], depends
    record(package_bytes={os.path.basename(d): os.path.getsize(d) for d in packages[1].values()})


def status(root, package):
    r = root.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", package, check=False)
    return r.stdout.strip() if r.returncode == 0 else "not known"


def mode(root, path):
    st = root.stat(path)
    return oct(st.st_mode & 0o7777), st.st_uid, st.st_gid


def start_tunneld(root, procs):
    """tunneld as systemd would start it from the installed unit: its User=/Group= with that user's groups, its
    UMask=, the variables of its EnvironmentFile= and its ExecStart= with them expanded."""
    unit = Unit(root.read(UNIT))
    env = unit.environment(root)
    argv = unit.command("ExecStart", env)
    umask = int(unit.get("UMask"), 8)
    proc = procs.start(["chroot", root.path, "setpriv", f"--reuid={unit.get('User')}",
                        f"--regid={unit.get('Group')}", "--init-groups", "env", "-i",
                        "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *[f"{k}={v}" for k, v in env.items()], *argv],
                       name="tunneld", preexec_fn=lambda: os.umask(umask))
    mp.wait_until(lambda: " started " in procs.log_text(proc) or proc.poll() is not None, 15, what="tunneld")
    assert proc.poll() is None, procs.log_text(proc)
    return unit, proc


def tunnelctl(root, *args):
    """tunnelctl as an operator runs it: as root. The registry's files keep their owner (the service user), so
    tunneld goes on writing them."""
    return root.run("tunnelctl", *args)


def start_nginx(root, procs, port):
    root.run("nginx", "-t")
    proc = procs.start(["chroot", root.path, "/usr/sbin/nginx", "-g", "daemon off;"], name="nginx")
    mp.wait_until(lambda: mp.port_open(port) or proc.poll() is not None, 15, what="nginx")
    assert proc.poll() is None, procs.log_text(proc)
    return proc


def open_tunnel_and_scrape(root, procs, exporter, key, ssh_port, http_port):
    ssh = procs.start(["ssh", "-N", *ssh_harness.SSH_OPTIONS, "-i", key, "-p", str(ssh_port),
                       "-R", f"web1:80:127.0.0.1:{exporter.port}", "monitoring@127.0.0.1"], name="ssh")
    expected = ssh_harness.body(SCRAPE)
    mp.wait_until(lambda: ssh_harness.fetch(http_port, f"/web1/bytes/{SCRAPE}") == expected, 30,
                  what="a byte-for-byte scrape of web1 through nginx and the tunnel")
    return ssh


def stop(procs, *running):
    for p in running:
        assert procs.stop(p, signal.SIGTERM, timeout=15) is not None


def assert_nginx_log_clean(root):
    log = root.read("/var/log/nginx/error.log")
    bad = [line for line in log.splitlines() if re.search(r"\[(alert|emerg)\]", line)]
    assert not bad, "alerts in nginx's error.log:\n" + "\n".join(bad)


def test_install_scrape_upgrade_remove_purge(packages, root, procs, workdir, exporter):
    _, update_s = debian_root.timed(root.apt, "update")
    first = [root.copy_in(d) for d in packages[1].values()]
    started = time.monotonic()
    root.apt("install", *first)
    install_s = time.monotonic() - started

    # -- installed: Debian's conventions --
    for p in PACKAGES:
        assert status(root, p) == "ii 0.1.0-1"
    assert root.exists(MODULE)
    assert root.read(MODULE_CONF).strip() == "load_module modules/ngx_http_tunnel_module.so;"
    assert os.readlink(root.host_path(MODULE_LINK)) == MODULE_CONF
    uid, gid, home, shell = root.user(SERVICE_USER)
    assert uid < 1000 and gid == root.group_id(SERVICE_USER) and home == STATE and shell == "/usr/sbin/nologin"
    www = root.group_id("www-data")
    assert "www-data" in root.run("id", "-Gn", SERVICE_USER).stdout.split()  # may give files the readers' group
    assert mode(root, STATE) == ("0o750", uid, www)
    assert mode(root, f"{STATE}/registry") == ("0o2750", uid, www)
    assert mode(root, f"{STATE}/host-keys") == ("0o700", uid, gid)
    assert not os.listdir(root.host_path(f"{STATE}/host-keys")), "host keys are made on first start"
    assert "ssh_host" not in root.run("dpkg", "-L", "monitoring-proxy").stdout
    assert os.readlink(root.host_path(UNIT_ENABLED)) == UNIT
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root.path}", "tunneld.service"],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify.stdout + verify.stderr
    # The sandboxing cannot run without systemd as init; its rating guards it (README: 1.5, "OK"; threshold 20 = 2.0).
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                               f"--root={root.path}", "tunneld.service"], capture_output=True, text=True)
    assert security.returncode == 0, security.stdout + security.stderr

    # -- configured as README says: tunneld's flags, the sample site enabled instead of the default one --
    ssh_port, http_port = mp.free_port(), mp.free_port()
    lo, hi = ssh_harness._pick_port_range()
    defaults = root.read(DEFAULTS)
    assert "--listen 0.0.0.0:2222" in defaults
    root.write(DEFAULTS, defaults.replace("--listen 0.0.0.0:2222",
                                          f"--listen 127.0.0.1:{ssh_port} --port-range {lo}-{hi}"))
    site = root.read(SITE)
    assert "listen 80;" in site
    root.write(SITE, site.replace("listen 80;", f"listen 127.0.0.1:{http_port};").replace("listen [::]:80;", ""))
    os.symlink(SITE, root.host_path(SITE_LINK))
    os.remove(root.host_path("/etc/nginx/sites-enabled/default"))

    unit, tunneld = start_tunneld(root, procs)
    assert unit.get("User") == SERVICE_USER
    log = procs.log_text(tunneld)
    assert f"host key generated path={HOST_KEY}" in log
    fingerprint = re.search(rf"host key path={HOST_KEY} .*fingerprint=(\S+)", log).group(1)
    assert mode(root, HOST_KEY) == ("0o600", uid, gid)
    key = ssh_harness.keygen(workdir, "web1")
    with open(key + ".pub") as f:
        tunnelctl(root, "add", "web1", "--key", f.read().strip())
    assert mode(root, f"{STATE}/registry/data.mdb") == ("0o640", uid, www)
    assert mode(root, f"{STATE}/registry/lock.mdb") == ("0o660", uid, www)
    nginx = start_nginx(root, procs, http_port)
    ssh = open_tunnel_and_scrape(root, procs, exporter, key, ssh_port, http_port)
    first_scrape_s = time.monotonic() - started
    sd = json.loads(ssh_harness.fetch(http_port, "/-/sd"))
    assert [t["labels"]["tunnel"] for t in sd] == ["web1"]

    # ExecReload, as the unit says it: tunneld re-reads its keys and keeps the tunnel.
    root.run(*unit.command("ExecReload", {"MAINPID": str(tunneld.pid)}))
    mp.wait_until(lambda: "SIGHUP: re-reading authorized_keys" in procs.log_text(tunneld), 10, what="SIGHUP")
    assert ssh_harness.fetch(http_port, f"/web1/bytes/{SCRAPE}") == ssh_harness.body(SCRAPE)
    stop(procs, ssh, tunneld, nginx)

    # -- upgrade to a rebuilt package: configuration, state and host key stay --
    root.apt("install", *[root.copy_in(d) for d in packages[2].values()])
    for p in PACKAGES:
        assert status(root, p) == "ii 0.1.0-2"
    assert f"--listen 127.0.0.1:{ssh_port}" in root.read(DEFAULTS)
    assert f"listen 127.0.0.1:{http_port};" in root.read(SITE)
    assert os.readlink(root.host_path(MODULE_LINK)) == MODULE_CONF
    _, tunneld = start_tunneld(root, procs)
    log = procs.log_text(tunneld)
    assert "host key generated" not in log and f"fingerprint={fingerprint}" in log
    assert "web1" in tunnelctl(root, "ls").stdout
    nginx = start_nginx(root, procs, http_port)
    ssh = open_tunnel_and_scrape(root, procs, exporter, key, ssh_port, http_port)
    stop(procs, ssh, tunneld, nginx)
    assert_nginx_log_clean(root)

    # -- remove (the site disabled first, as README says): programs go, state and configuration stay --
    os.remove(root.host_path(SITE_LINK))
    root.apt("remove", *PACKAGES)
    for p in PACKAGES:
        assert status(root, p) == "rc 0.1.0-2"
    assert not root.exists("/usr/sbin/tunneld") and not root.exists(MODULE)
    assert not root.exists(MODULE_LINK) and root.exists(MODULE_LINK + ".removed")
    assert root.exists(f"{STATE}/registry/data.mdb") and root.exists(HOST_KEY) and root.exists(DEFAULTS)
    assert root.user(SERVICE_USER)[0] == uid
    root.run("nginx", "-t")  # no load_module line left pointing at the removed module

    # -- reinstall after remove: the module is enabled again, the same user and state are reused --
    with open(root.host_path(HOST_KEY), "rb") as f:
        host_key = f.read()
    root.apt("install", *[root.copy_in(d) for d in packages[2].values()])
    assert os.readlink(root.host_path(MODULE_LINK)) == MODULE_CONF and not root.exists(MODULE_LINK + ".removed")
    assert root.user(SERVICE_USER)[0] == uid and mode(root, f"{STATE}/registry") == ("0o2750", uid, www)
    with open(root.host_path(HOST_KEY), "rb") as f:
        assert f.read() == host_key

    # -- purge: state, configuration, module link and unit enablement go; the system user stays --
    root.apt("purge", *PACKAGES)
    for p in PACKAGES:
        assert status(root, p) in ("not known", "un ")
    for gone in (STATE, DEFAULTS, SITE, "/etc/monitoring-proxy", MODULE_LINK, MODULE_LINK + ".removed",
                 UNIT_ENABLED):
        assert not root.exists(gone), f"{gone} left after purge"
    assert root.user(SERVICE_USER)[0] == uid
    root.run("nginx", "-t")

    record(apt_update_seconds=round(update_s, 1), apt_install_seconds=round(install_s, 1),
           install_to_first_scrape_seconds=round(first_scrape_s, 1))
