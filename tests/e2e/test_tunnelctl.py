"""tunnelctl end to end: the real binary on a real registry; exit statuses 0/1/2/3 and the messages users see."""
import json
import os
import re
import stat
import subprocess

import pytest

import mp
import nginx_harness as h


@pytest.fixture
def reg(workdir):
    return os.path.join(workdir, "registry")


def ctl(reg, *args, check=None):
    p = subprocess.run([mp.program("tunnelctl"), "--registry", reg, *args], capture_output=True, text=True,
                       env={**os.environ, "MONITORING_PROXY_REGISTRY_GROUP": "nogroup"})
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def run_ctl(*args, **env):
    """tunnelctl as an operator's shell runs it: neither registry variable unless given."""
    return subprocess.run([mp.program("tunnelctl"), *args], capture_output=True, text=True,
                          env=h.operator_env(**env))


def ls(reg):
    return {t["name"]: t for t in json.loads(ctl(reg, "ls", "--json", check=0).stdout)}


def make_key(workdir, name):
    path = os.path.join(workdir, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path], check=True)
    fp = subprocess.run(["ssh-keygen", "-lf", path + ".pub"], capture_output=True, text=True, check=True).stdout.split()[1]
    return path + ".pub", fp


def test_add_show_ls_rm_round_trip(reg, workdir):
    pub, fp = make_key(workdir, "k1")
    out = ctl(reg, "add", "web1", "--port", "20001", "--key-file", pub, "--label", "env=prod",
              "--path", "/metrics", check=0)
    assert "added target web1 on port 20001" in out.stdout
    t = ls(reg)["web1"]
    assert t["state"] == "disconnected" and t["fixed_port"] == 20001
    assert t["keys"] == [fp]  # the fingerprint ssh-keygen -lf prints
    assert t["labels"] == {"env": "prod"} and t["paths"] == ["/metrics"]
    show = ctl(reg, "show", "web1", check=0).stdout
    assert fp in show and "env=prod" in show
    assert json.loads(ctl(reg, "show", "web1", "--json", check=0).stdout)["name"] == "web1"
    ctl(reg, "rm", "web1", check=0)
    assert ls(reg) == {}


def test_labels_and_keys(reg, workdir):
    pub, fp = make_key(workdir, "k2")
    ctl(reg, "add", "db", check=0)
    ctl(reg, "label", "db", "env=prod", "team=data", check=0)
    ctl(reg, "label", "db", "env=staging", check=0)
    ctl(reg, "label", "db", "--rm", "team", check=0)
    assert ls(reg)["db"]["labels"] == {"env": "staging"}
    with open(pub) as f:
        ctl(reg, "key", "add", "db", f.read().strip(), check=0)
    assert ls(reg)["db"]["keys"] == [fp]
    dup = ctl(reg, "key", "add", "db", open(pub).read().strip(), check=2)
    assert "already bound" in dup.stderr
    ctl(reg, "key", "rm", "db", fp, check=0)
    assert ls(reg)["db"]["keys"] == []
    missing = ctl(reg, "key", "rm", "db", fp, check=2)
    assert "is not bound" in missing.stderr


@pytest.mark.parametrize("args,message", [
    (["add", "Web_1"], "[a-z0-9][a-z0-9._-]{0,62}"),
    (["add", "ok", "--label", "__name__=x"], "reserved"),
    (["add", "ok", "--label", "a-b=x"], "Prometheus label names must match"),
    (["add", "ok", "--label", "tunnel=x"], "set by monitoring-proxy"),
    (["add", "ok", "--key", "ssh-ed25519 AAAAnotakey"], "not a valid ssh-ed25519 public key"),
    (["add", "ok", "--key", "ssh-dss AAAAB3NzaC1kc3MAAACBAP"], "DSA keys are not accepted"),
    (["add", "ok", "--path", "/a/../b"], "invalid path"),
    (["rm", "ghost"], 'unknown target "ghost"'),
    (["show", "ghost"], 'unknown target "ghost"'),
    (["label", "ghost", "a=b"], 'unknown target "ghost"'),
])
def test_refused_changes_exit_2_with_a_clear_message(reg, args, message):
    ctl(reg, "init", check=0)
    p = ctl(reg, *args, check=2)
    assert message in p.stderr
    assert ls(reg) == {}


@pytest.mark.parametrize("args,message", [
    ([], "missing COMMAND"),
    (["frobnicate"], 'unknown command "frobnicate"'),
    (["add"], "missing NAME"),
    (["add", "x", "--port", "70000"], 'invalid port "70000"'),
    (["add", "x", "--port"], "--port needs a value"),
    (["add", "x", "--bogus"], 'unknown argument "--bogus"'),
    (["label", "x"], "give K=V"),
    (["--map-size", "zero", "ls"], "invalid --map-size"),
])
def test_usage_errors_exit_1(reg, args, message):
    p = ctl(reg, *args, check=1)
    assert message in p.stderr and "--help" in p.stderr


def test_duplicates_are_refused(reg):
    ctl(reg, "add", "a", "--port", "20001", check=0)
    assert "already exists" in ctl(reg, "add", "a", check=2).stderr
    assert 'already the port of target "a"' in ctl(reg, "add", "b", "--port", "20001", check=2).stderr


def commands(lines):
    """Command names ("add", "key rm") at the start of each line: words before the first argument (or before the
    column gap of an argument-less command such as `init`)."""
    return {m.group(1) for m in (re.match(r"((?:[a-z][a-z-]* )*?[a-z][a-z-]*)(?: [A-Z\[]|  |$)", line) for line in lines)
            if m}


def test_help_documents_every_command_and_flag(reg):
    """--help and README's tunnelctl synopsis and command table name the same commands and flags: one cannot
    change alone."""
    out = ctl(reg, "--help", check=0).stdout
    synopsis, table = mp.readme_reference("tunnelctl")
    assert mp.long_flags(out) == mp.long_flags("\n".join(synopsis + table)) | {"--help", "--version"}
    usage = out.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    documented = [cell for row in table for cell in row.split("` / `")]
    assert commands(line[2:] for line in usage.splitlines() if re.match(r"  [a-z]", line)) == commands(documented)
    assert "Exit status" in out


def test_import_targets_is_all_or_nothing_and_idempotent(reg, workdir):
    targets = os.path.join(workdir, "targets")
    with open(targets, "w") as f:
        f.write("# the original image's format\nlocalhost:20001 external-host-1\nlocalhost:20002 external-host-2\n")
    out = ctl(reg, "import-targets", targets, check=0).stdout
    assert "2 added" in out
    before = ls(reg)
    assert before["external-host-1"]["fixed_port"] == 20001 and before["external-host-1"]["origin"] == "import"
    out = ctl(reg, "import-targets", targets, check=0).stdout
    assert "0 added, 0 changed, 0 removed" in out
    assert ls(reg) == before  # importing twice changes nothing

    with open(targets, "w") as f:
        f.write("localhost:20001 external-host-1\nlocalhost:20003 new-host\nbad line here\nlocalhost:99999 x\n")
    p = ctl(reg, "import-targets", targets, check=2)
    assert f"{targets}:3:" in p.stderr and f"{targets}:4:" in p.stderr and "nothing imported" in p.stderr
    assert ls(reg) == before  # all or nothing

    ctl(reg, "label", "external-host-1", "env=prod", check=0)
    with open(targets, "w") as f:
        f.write("localhost:20011 external-host-1\n")
    out = ctl(reg, "import-targets", targets, check=0).stdout
    assert "1 changed, 1 removed" in out
    now = ls(reg)
    assert set(now) == {"external-host-1"}
    assert now["external-host-1"]["fixed_port"] == 20011 and now["external-host-1"]["labels"] == {"env": "prod"}


def test_import_does_not_remove_targets_declared_by_hand(reg, workdir):
    ctl(reg, "add", "manual", check=0)
    targets = os.path.join(workdir, "targets")
    open(targets, "w").write("")
    ctl(reg, "import-targets", targets, check=0)
    assert "manual" in ls(reg)
    assert "cannot read" in ctl(reg, "import-targets", os.path.join(workdir, "missing"), check=2).stderr


def test_registry_permissions_and_unusable_registry(reg, workdir):
    assert "ready" in ctl(reg, "init", check=0).stdout
    st = os.stat(reg)
    assert stat.S_IMODE(st.st_mode) == 0o2750 and st.st_gid == 65534
    assert stat.S_IMODE(os.stat(os.path.join(reg, "lock.mdb")).st_mode) == 0o660
    # A registry path that is a file: exit 3 naming it.
    bogus = os.path.join(workdir, "file")
    open(bogus, "w").write("x")
    p = ctl(bogus, "ls", check=3)
    assert bogus in p.stderr
    # Garbage data.mdb: exit 3, and the file is left as it was for the operator to inspect.
    broken = os.path.join(workdir, "broken")
    os.mkdir(broken)
    with open(os.path.join(broken, "data.mdb"), "wb") as f:
        f.write(b"\x00garbage" * 1000)
    p = ctl(broken, "ls", check=3)
    assert "broken" in p.stderr
    assert os.path.getsize(os.path.join(broken, "data.mdb")) == 8000


def test_map_full_is_a_clear_error(reg):
    ctl(reg, "--map-size", "1", "add", "keep", check=0)
    p = None
    for i in range(400):
        p = ctl(reg, "--map-size", "1", "add", f"t{i}", "--label", "filler=" + "x" * 1000,
                "--label", "more=" + "y" * 1000)
        if p.returncode != 0:
            break
    assert p.returncode == 3, p.stderr
    assert "registry is full" in p.stderr and "--map-size" in p.stderr
    assert "keep" in ls(reg)
    ctl(reg, "--map-size", "16", "add", "after-growth", check=0)


@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["show", "web1"]])
def test_read_only_commands_create_no_registry(reg, args):
    p = run_ctl("--registry", reg, *args)
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert f"no registry at {reg}" in p.stderr and f"tunnelctl --registry {reg} init" in p.stderr
    assert p.stdout == ""
    assert not os.path.exists(reg)


def test_the_default_registry_is_named_on_stderr(reg):
    default = "/var/lib/monitoring-proxy/registry"
    existed = os.path.exists(default)
    p = run_ctl("ls", "--json")
    assert p.stderr.startswith(f"tunnelctl: using registry {default} (the default"), p.stderr
    if existed:  # this machine's own registry: read, never changed
        assert p.returncode == 0 and isinstance(json.loads(p.stdout), list), p.stderr
    else:
        assert p.returncode == 3 and f"no registry at {default}" in p.stderr and p.stdout == ""
        assert not os.path.exists(default)
    ctl(reg, "init", check=0)
    for named in (run_ctl("--registry", reg, "ls"), run_ctl("ls", MONITORING_PROXY_REGISTRY=reg)):
        assert named.returncode == 0 and "using registry" not in named.stderr, named.stderr


SD_LOCATION = "        location = /-/sd { tunnel_sd; }"


def test_registry_group_survives_commands_run_without_the_group_variable(env):
    """Issue 18: `tunnelctl ls` without $MONITORING_PROXY_REGISTRY_GROUP regrouped a nogroup registry to www-data
    and nginx's workers (nobody:nogroup) answered 500 to everything. Readers change nothing; a writer keeps the
    group the registry has."""
    env.target("web1")  # created for the workers' group, nogroup, by the harness
    nginx = env.nginx(server_extra=SD_LOCATION).start()
    reg = env.registry.path
    before = env.registry.files()
    assert {gid for _, _, gid, _ in before} == {65534}
    for args in (["ls"], ["ls", "--json"], ["show", "web1"], ["show", "web1", "--json"]):
        p = run_ctl("--registry", reg, *args)
        assert p.returncode == 0, p.stderr
    assert env.registry.files() == before
    nginx.reload()  # fresh workers open the registry anew
    assert nginx.status("/-/sd") == 200 and nginx.status("/web1/metrics") == 200

    assert run_ctl("--registry", reg, "add", "db").returncode == 0
    assert [(path, gid, mode) for path, _, gid, mode in env.registry.files()] == \
        [(path, gid, mode) for path, _, gid, mode in before]
    nginx.reload()
    status, body, _ = nginx.get("/-/sd")
    assert status == 200 and {g["labels"]["tunnel"] for g in json.loads(body)} == {"web1", "db"}
    assert nginx.status("/web1/metrics") == 200
