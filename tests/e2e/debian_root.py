"""Debian packages under test: the .debs CPack makes from the build tree, and a fresh bookworm root file system
(mmdebstrap) to install them into with apt, entered with chroot. The base root is cached as a tarball keyed by
everything that shapes it, so only the first run on a machine pays for mmdebstrap."""
import fcntl
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time

import mp

CACHE_DIR = os.environ.get("MP_TEST_CACHE_DIR", "/var/cache/monitoring-proxy-tests")
# systemd: a Debian host boots it, and `systemd-analyze verify --root` checks a unit against its targets.
BASE_PACKAGES = ["systemd"]
SUITE = "bookworm"


def host_sources():
    """The host's apt sources for bookworm (the one Debian registry this machine reaches), as mmdebstrap mirror
    arguments: the root is made from where the host's own apt installs from."""
    files = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list")),
             *sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))]
    found = [f for f in files if os.path.isfile(f) and re.search(rf"\b{SUITE}\b", open(f).read())]
    assert found, f"no apt source for {SUITE} among {files}"
    return found


def base_tarball():
    """Path of the cached base root tarball, made with mmdebstrap when missing (under a lock, so two test runs
    never build it twice or read half a file)."""
    sources = host_sources()
    args = ["mmdebstrap", "--variant=apt", "--format=tar", "--include=" + ",".join(BASE_PACKAGES), SUITE]
    key = hashlib.sha256(json.dumps([args, [open(f).read() for f in sources]]).encode()).hexdigest()[:16]
    os.makedirs(CACHE_DIR, exist_ok=True)
    path = os.path.join(CACHE_DIR, f"{SUITE}-base-{key}.tar")
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):
            partial = path + ".partial"
            r = subprocess.run([*args, partial, *sources], capture_output=True, text=True)
            assert r.returncode == 0, f"mmdebstrap failed:\n{r.stdout}\n{r.stderr}"
            os.rename(partial, path)
    return path


def build_packages(build_dir, out_dir, release):
    """The .debs CPack makes from `build_dir` (already built: nothing is compiled), with Debian revision
    `release`; returns {package name: path}."""
    r = subprocess.run(["cpack", "--config", os.path.join(build_dir, "CPackConfig.cmake"), "-B", out_dir,
                        "-D", f"CPACK_DEBIAN_PACKAGE_RELEASE={release}"], capture_output=True, text=True)
    assert r.returncode == 0, f"cpack failed:\n{r.stdout}\n{r.stderr}"
    debs = glob.glob(os.path.join(out_dir, f"*-{release}_*.deb"))
    return {os.path.basename(d).split("_")[0]: d for d in debs}


def sanitized_build(build_dir):
    with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
        return re.search(r"^MP_SANITIZE:BOOL=(ON|TRUE|1)$", f.read(), re.M) is not None


class Root:
    """A bookworm root file system in `workdir`/root, unpacked from the cached base. Services are not started by
    package scripts (policy-rc.d: there is no init here); the test starts the programs itself. /proc is mounted
    while it lives; `close()` stops whatever still runs inside (by pid) and unmounts it."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, "root")
        os.makedirs(self.path)
        subprocess.run(["tar", "-xf", base_tarball(), "-C", self.path], check=True)
        self.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", mode=0o755)
        shutil.copy("/etc/resolv.conf", self.host_path("/etc/resolv.conf"))  # apt resolves the registry
        subprocess.run(["mount", "-t", "proc", "proc", self.host_path("/proc")], check=True)
        self.mounted = True

    def host_path(self, path):
        return os.path.join(self.path, path.lstrip("/"))

    def read(self, path):
        with open(self.host_path(path)) as f:
            return f.read()

    def write(self, path, text, mode=0o644):
        with open(self.host_path(path), "w") as f:
            f.write(text)
        os.chmod(self.host_path(path), mode)

    def exists(self, path):
        return os.path.lexists(self.host_path(path))

    def stat(self, path):
        return os.lstat(self.host_path(path))

    def run(self, *args, check=True, env=None, timeout=600):
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        full_env.update(env or {})
        r = subprocess.run(["chroot", self.path, *args], capture_output=True, text=True, env=full_env,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} in the root failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def apt(self, *args):
        return self.run("apt-get", "-y", "-q", "--no-install-recommends", *args)

    def copy_in(self, host_file, directory="/tmp"):
        shutil.copy(host_file, self.host_path(directory))
        return os.path.join(directory, os.path.basename(host_file))

    def user(self, name):
        """(uid, gid, home, shell) of a user of the root, or None."""
        for line in self.read("/etc/passwd").splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2]), int(fields[3]), fields[5], fields[6]
        return None

    def group_id(self, name):
        for line in self.read("/etc/group").splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        return None

    def pids_inside(self):
        """Processes whose root directory is this root: what the test started in it."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/root") == self.path:
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids

    def close(self):
        for pid in self.pids_inside():  # a leftover nginx worker or the like would keep /proc busy
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        mp.wait_until(lambda: not self.pids_inside(), 10, what="processes in the root to exit")
        if self.mounted:
            subprocess.run(["umount", self.host_path("/proc")], check=True)
            self.mounted = False
        shutil.rmtree(self.path, ignore_errors=True)


class Unit:
    """A systemd service unit as systemd reads it, enough to start its service the way systemd would: [Service]
    keys (continuation lines joined, repeated keys kept in order), EnvironmentFile= and $VAR / ${VAR} in
    Exec lines."""

    def __init__(self, text):
        self.keys = {}
        section = None
        for line in re.sub(r"\\\n", " ", text).splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            k, _, v = line.partition("=")
            self.keys.setdefault((section, k.strip()), []).append(v.strip())

    def get(self, key, section="Service"):
        values = self.keys.get((section, key), [])
        return values[-1] if values else None

    def environment(self, root):
        """Variables of the unit's EnvironmentFile= files in `root` (a leading "-": optional)."""
        env = {}
        for spec in self.keys.get(("Service", "EnvironmentFile"), []):
            path = spec.lstrip("-")
            if not root.exists(path):
                assert spec.startswith("-"), f"EnvironmentFile {path} missing"
                continue
            for line in root.read(path).splitlines():
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, _, v = line.partition("=")
                    env[k.strip()] = " ".join(shlex.split(v))
        return env

    def command(self, key, env):
        """An Exec line as argv: `$VAR` expands to its words, `${VAR}` to one word (systemd.service(5))."""
        argv = []
        for word in shlex.split(self.get(key)):
            m = re.fullmatch(r"\$(\w+)", word)
            if m:
                argv += env.get(m.group(1), "").split()
            else:
                argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
        return argv


def timed(fn, *args):
    start = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - start
