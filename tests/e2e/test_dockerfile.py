"""docker/Dockerfile and docker/entrypoint checked without a Docker engine: the packages the image installs exist in
Debian bookworm, the runtime packages provide every library the built programs need, every file the Dockerfile
copies exists, the image declares its ports, volumes and health check, and the scripts pass bash -n and
shellcheck."""
import functools
import os
import re
import shlex
import signal
import subprocess

import mp
from image_harness import DOCKER_DIR, dockerfile_instructions

INSTALL_DEPS = os.path.join(DOCKER_DIR, "install-deps.sh")
ENTRYPOINT = os.path.join(DOCKER_DIR, "entrypoint")
MAKE_BASE_IMAGES = os.path.join(DOCKER_DIR, "make-base-images")


@functools.lru_cache(maxsize=None)
def install_deps_lists():
    """The packages `install-deps.sh MODE` installs, found by running the script itself with dpkg-query and
    apt-get replaced by stubs: every package looks missing and apt-get prints what it was asked to install."""
    stubs = mp.make_workdir("mp-install-deps-")
    try:
        with open(os.path.join(stubs, "dpkg-query"), "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        with open(os.path.join(stubs, "apt-get"), "w") as f:
            f.write('#!/bin/sh\n[ "$1" = install ] && shift && for a; do case $a in -*) ;; *) echo "$a";; esac; done\n'
                    "exit 0\n")
        for stub in ("dpkg-query", "apt-get"):
            os.chmod(os.path.join(stubs, stub), 0o755)
        env = dict(os.environ, PATH=stubs + ":" + os.environ["PATH"])
        lists = {}
        for mode in ("build", "test", "runtime"):
            out = subprocess.run(["bash", INSTALL_DEPS, mode], env=env, check=True, capture_output=True,
                                 text=True).stdout
            lists[mode] = out.split()
    finally:
        mp.remove_workdir(stubs)
    assert all(lists.values()), lists
    return {mode: tuple(pkgs) for mode, pkgs in lists.items()}


def dockerfile_packages():
    """{stage: [package]} for every package the Dockerfile installs, through install-deps.sh MODE or apt-get."""
    lists = install_deps_lists()
    per_stage = {}
    for stage, word, rest in dockerfile_instructions():
        if word != "RUN":
            continue
        for mode in re.findall(r"install-deps\.sh\s+(\w+)", rest):
            assert mode in lists, f"unknown install-deps.sh mode {mode}"
            per_stage.setdefault(stage, []).extend(lists[mode])
        for cmd in re.split(r"&&|;|\|\|", rest):
            words = shlex.split(cmd)
            if words[:2] == ["apt-get", "install"] or words[:2] == ["apt", "install"]:
                per_stage.setdefault(stage, []).extend(w for w in words[2:] if not w.startswith("-"))
    return per_stage


def ensure_apt_lists():
    if not any("Packages" in f for f in os.listdir("/var/lib/apt/lists")):
        subprocess.run(["apt-get", "update", "-qq"], check=True)


def test_the_dockerfile_is_a_bookworm_builder_and_a_bookworm_slim_runtime():
    froms = [rest for _, word, rest in dockerfile_instructions() if word == "FROM"]
    assert froms == ["debian:bookworm AS build", "debian:bookworm-slim"]
    packages = dockerfile_packages()
    lists = install_deps_lists()
    assert packages[0] == list(lists["build"])
    assert packages[1] == list(lists["runtime"]), "the runtime stage installs only the runtime list"
    for compiler in ("g++", "cmake", "nginx-dev", "libssh-dev"):
        assert compiler not in packages[1]
    configure = [rest for stage, word, rest in dockerfile_instructions() if word == "RUN" and "cmake -S" in rest]
    assert len(configure) == 1
    # The image is built the way CI tests it: the project's default build type, warnings as errors.
    assert "-DCMAKE_BUILD_TYPE=RelWithDebInfo" in configure[0] and "-DMP_WERROR=ON" in configure[0]
    assert "set(CMAKE_BUILD_TYPE RelWithDebInfo)" in open(os.path.join(mp.SOURCE_DIR, "CMakeLists.txt")).read()


def test_every_package_the_image_installs_exists_in_bookworm():
    with open("/etc/os-release") as f:
        assert "VERSION_CODENAME=bookworm" in f.read(), "apt-cache must answer for Debian bookworm"
    ensure_apt_lists()
    packages = sorted({p for pkgs in dockerfile_packages().values() for p in pkgs})
    policy = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True).stdout
    blocks = {m.group(1): m.group(2) for m in re.finditer(r"^(\S+):\n((?:[ \t].*\n?)*)", policy, re.M)}
    missing = {}
    for pkg in packages:
        block = blocks.get(pkg, "")
        candidate = re.search(r"Candidate: (\S+)", block)
        if not candidate or candidate.group(1) == "(none)" or " bookworm" not in block:
            missing[pkg] = block.strip() or "(apt-cache knows nothing)"
    assert not missing, missing


@functools.lru_cache(maxsize=None)
def runtime_image_packages():
    """What the runtime stage holds: the runtime list and everything it depends on, apt and its dependencies (in
    every Debian image), and the Essential packages (the base of debian:bookworm-slim). Computed from the
    installed packages' metadata (install-deps.sh installs the runtime list here too); an alternative `a | b`
    counts every installed choice, a virtual package every installed provider."""
    fields = "${Package}\t${Essential}\t${Depends}, ${Pre-Depends}\t${Provides}\n"
    rows = subprocess.run(["dpkg-query", "-W", f"-f={fields}"], check=True, capture_output=True,
                          text=True).stdout.splitlines()
    depends, providers, essential = {}, {}, set()
    name_of = lambda item: item.strip().split()[0].split(":")[0] if item.strip() else ""  # noqa: E731
    for row in rows:
        pkg, is_essential, deps, provides = row.split("\t")
        depends[pkg] = [[name_of(alt) for alt in group.split("|")] for group in deps.split(",") if group.strip()]
        for virtual in provides.split(","):
            if name_of(virtual):
                providers.setdefault(name_of(virtual), set()).add(pkg)
        if is_essential == "yes":
            essential.add(pkg)
    runtime = install_deps_lists()["runtime"]
    missing = [p for p in runtime if p not in depends]
    assert not missing, f"runtime packages not installed here (run docker/install-deps.sh runtime): {missing}"
    todo, closure = [*runtime, "apt", *essential], set()
    while todo:
        pkg = todo.pop()
        if pkg in closure:
            continue
        closure.add(pkg)
        for group in depends.get(pkg, []):
            for alt in group:
                todo.extend(p for p in ({alt} if alt in depends else set()) | providers.get(alt, set())
                            if p not in closure)
    return frozenset(closure)


SANITIZER_RUNTIMES = ("libasan.so", "libubsan.so")
# Linked in with the sanitizers only (gcc's -fsanitize=address adds libatomic for its instrumentation).
SANITIZER_COMPANIONS = ("libatomic.so",)


def test_the_runtime_packages_provide_every_library_of_the_built_programs():
    """Each shared library tunneld, tunnelctl and the module link to comes from a package the runtime stage
    installs, or one they (or apt, present in every Debian image) depend on."""
    closure = runtime_image_packages()
    needed = {}
    for name in ("tunneld/src/tunneld", "tunneld/tunnelctl/tunnelctl", "ngx_module/ngx_http_tunnel_module.so"):
        dynamic = subprocess.run(["readelf", "-d", os.path.join(mp.BUILD_DIR, name)], check=True,
                                 capture_output=True, text=True).stdout
        libs = re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic)
        sanitized = any(lib.startswith(SANITIZER_RUNTIMES) for lib in libs)
        for lib in libs:
            if lib.startswith(SANITIZER_RUNTIMES) or (sanitized and lib.startswith(SANITIZER_COMPANIONS)):
                continue  # a -DMP_SANITIZE=ON test build; the image builds without sanitizers
            needed.setdefault(lib, []).append(name)
    cache = subprocess.run(["ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    unprovided = {}
    for lib, users in sorted(needed.items()):
        match = re.search(rf"^\s*{re.escape(lib)} \(libc6,x86-64\).* => (\S+)$", cache, re.M) or \
            re.search(rf"^\s*{re.escape(lib)} .* => (\S+)$", cache, re.M)
        assert match, f"{lib} (needed by {users}) is not in the dynamic linker's cache"
        owner = ""
        for candidate in (match.group(1), os.path.realpath(match.group(1))):  # dpkg knows pre-usrmerge paths
            owner = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True).stdout.split(":")[0]
            if owner:
                break
        if owner not in closure:
            unprovided[f"{lib} (needed by {', '.join(users)})"] = owner or "no package"
    assert not unprovided, unprovided


def test_every_file_the_dockerfile_copies_exists():
    build_outputs = {  # what the builder stage's RUN produces: CMake's outputs, and one file it writes itself
        "/build/tunneld/src/tunneld": True, "/build/tunneld/tunnelctl/tunnelctl": True,
        "/build/ngx_module/ngx_http_tunnel_module.so": True, "/build/nginx-version": False,
    }
    for _, word, rest in dockerfile_instructions():
        if word != "COPY":
            continue
        args = shlex.split(rest)
        from_build = any(a.startswith("--from=") for a in args)
        sources = [a for a in args if not a.startswith("--")][:-1]
        for src in sources:
            if from_build:
                assert src in build_outputs, f"COPY --from=build {src}: not a known build output"
                if build_outputs[src]:  # the path the Dockerfile names is where CMake puts it
                    built = os.path.join(mp.BUILD_DIR, os.path.relpath(src, "/build"))
                    assert os.path.exists(built), f"COPY --from=build {src}: CMake builds no {built}"
            else:
                assert os.path.exists(os.path.join(mp.SOURCE_DIR, src)), f"COPY {src}: not in the repository"


def test_the_image_declares_ports_volumes_health_check_and_entrypoint():
    instructions = dockerfile_instructions()
    runtime = {}
    for stage, word, rest in instructions:
        if stage == 1:
            runtime.setdefault(word, []).append(rest)
    assert runtime["EXPOSE"] == ["22 80"]
    volumes = " ".join(runtime["VOLUME"])
    assert "/etc/ssh" in volumes and "/var/lib/monitoring-proxy" in volumes
    assert "monitoring-proxy-entrypoint" in runtime["HEALTHCHECK"][0] and "healthcheck" in runtime["HEALTHCHECK"][0]
    assert runtime["ENTRYPOINT"] == ['["/usr/local/bin/monitoring-proxy-entrypoint"]']
    copies = " ".join(runtime["COPY"])
    assert "docker/entrypoint /usr/local/bin/monitoring-proxy-entrypoint" in copies
    # The entrypoint's defaults are where the Dockerfile puts things.
    entry = open(ENTRYPOINT).read()
    assert "MP_NGINX_MODULE:-/usr/lib/nginx/modules/ngx_http_tunnel_module.so" in entry
    assert "/usr/lib/nginx/modules/" in copies
    assert "MP_SHARE_DIR:-$MP_ROOT/usr/share/monitoring-proxy" in entry
    assert "/usr/share/monitoring-proxy/" in copies
    assert "/usr/local/bin/" in copies and "MP_TUNNELD:-tunneld" in entry


def test_the_dockerignore_keeps_build_trees_out_of_the_context():
    ignored = open(os.path.join(DOCKER_DIR, "Dockerfile.dockerignore")).read().split()
    assert {".git", "build", "build-*"} <= set(ignored)


def test_the_shell_scripts_parse():
    for script in (ENTRYPOINT, MAKE_BASE_IMAGES):
        result = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_the_shell_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", "--severity=style", ENTRYPOINT, MAKE_BASE_IMAGES], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_the_entrypoint_needs_only_commands_of_the_runtime_image(workdir, procs):
    """The entrypoint prepares, runs, answers its health check and stops with a PATH holding only the commands
    of the runtime image's packages."""
    from entrypoint_harness import Root
    bin_dir = os.path.join(workdir, "image-bin")
    os.makedirs(bin_dir)
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Package}\n"], check=True, capture_output=True,
                               text=True).stdout.split()
    packages = sorted(runtime_image_packages() & set(installed))
    files = subprocess.run(["dpkg", "-L", *packages], capture_output=True, text=True).stdout.splitlines()
    for f in files:
        if os.path.dirname(f) in ("/bin", "/usr/bin", "/sbin", "/usr/sbin") and os.path.isfile(f) \
                and os.access(f, os.X_OK) and not os.path.exists(os.path.join(bin_dir, os.path.basename(f))):
            os.symlink(f, os.path.join(bin_dir, os.path.basename(f)))
    for absent in ("python3", "curl", "g++", "cmake"):  # the PATH really is the image's
        assert not os.path.exists(os.path.join(bin_dir, absent)), absent
    root = Root(workdir)
    env = {"PATH": bin_dir}
    prepared = root.run("prepare", env=env)
    assert prepared.returncode == 0, prepared.stderr
    entry = root.start(procs, env=env)
    try:
        healthy = root.run("healthcheck", env=env)
        assert healthy.returncode == 0, healthy.stderr
        os.kill(entry.pid, signal.SIGTERM)
        assert entry.wait(timeout=5) == 0, procs.log_text(entry)
        assert "command not found" not in procs.log_text(entry)
    finally:
        root.kill_leftovers()
