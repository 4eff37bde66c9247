"""docker/Dockerfile built and run by a real engine, podman (Debian's, rootful, daemonless), in an image store of
the tests' own under /var/cache/monitoring-proxy-tests (kept between runs, so warm runs reuse the base image
tarballs, the layer cache and the built image). Every container and volume a test makes is removed by id."""
import fnmatch
import hashlib
import os
import re
import resource
import shutil
import subprocess
import time
import uuid

import mp

DOCKER_DIR = os.path.abspath(os.path.join(mp.SOURCE_DIR, "docker"))
DOCKERFILE = os.path.join(DOCKER_DIR, "Dockerfile")
CACHE = os.environ.get("MP_IMAGE_CACHE", "/var/cache/monitoring-proxy-tests")
IMAGE = "localhost/monitoring-proxy:test"
BUILDER_IMAGE = "localhost/monitoring-proxy-build:test"
INPUTS_LABEL = "org.monitoring-proxy.inputs"


def dockerfile_instructions():
    """[(stage index, INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    text = open(DOCKERFILE).read()
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                            if not line.lstrip().startswith("#")))
    out, stage = [], -1
    for line in joined.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, rest.strip()))
    return out


def context_files():
    """The build context: every file under the repository that Dockerfile.dockerignore does not exclude (its
    patterns as Docker reads them: a path is out when it or a directory above it matches; `**/` at any depth)."""
    with open(os.path.join(DOCKER_DIR, "Dockerfile.dockerignore")) as f:
        patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]

    def ignored(rel):
        parts = rel.split("/")
        return any(fnmatch.fnmatchcase(parts[-1], p[3:]) if p.startswith("**/") else fnmatch.fnmatchcase(rel, p)
                   for p in patterns)

    files = []
    for dirpath, dirnames, filenames in os.walk(mp.SOURCE_DIR):
        rel_dir = os.path.relpath(dirpath, mp.SOURCE_DIR)
        rel = (lambda n: n) if rel_dir == "." else (lambda n: f"{rel_dir}/{n}")
        dirnames[:] = sorted(d for d in dirnames if not ignored(rel(d)))
        files += [rel(f) for f in sorted(filenames) if not ignored(rel(f))]
    return files


def inputs_hash(base_hash):
    """Hash of what the image is made of: the build context (the Dockerfile is in it) and the base images."""
    h = hashlib.sha256(base_hash.encode())
    for rel in context_files():
        path = os.path.join(mp.SOURCE_DIR, rel)
        h.update(rel.encode() + b"\0" + oct(os.stat(path).st_mode & 0o111).encode())
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:24]


class Podman:
    """podman with the tests' own image store and settings that work on this kind of machine:
    - overlay storage (native overlay works on ext4 here; vfs would copy every layer in full);
    - runtime runc: crun 1.8 refuses hosts with cgroup v1 and v2 mounted side by side (hybrid) when the v2
      hierarchy has a controller ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2");
    - cgroupfs and a file for events: no systemd runs as PID 1;
    - rlimits no higher than this process has: podman as root otherwise asks for nofile=1048576 and a large nproc,
      which a host without CAP_SYS_RESOURCE refuses ("setrlimit `RLIMIT_NOFILE`: Operation not permitted"); podman
      lowers its own nproc limit to kernel.pid_max before it starts the runtime, so no more than that."""

    def __init__(self):
        for program in ("podman", "runc", "mmdebstrap"):
            assert shutil.which(program), f"{program} is not installed: run docker/install-deps.sh test"
        self.config_dir = os.path.join(CACHE, "podman", "config")
        os.makedirs(self.config_dir, exist_ok=True)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], int(open("/proc/sys/kernel/pid_max").read()))
        self.env = dict(os.environ,
                        CONTAINERS_STORAGE_CONF=self._write("storage.conf", f"""[storage]
driver = "overlay"
graphroot = "{CACHE}/podman/storage"
runroot = "/run/monitoring-proxy-tests/podman"
"""),
                        CONTAINERS_CONF=self._write("containers.conf", f"""[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""))

    def _write(self, name, text):
        path = os.path.join(self.config_dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def __call__(self, *args, check=True, timeout=120):
        result = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=timeout)
        if check and result.returncode != 0:
            output = "\n".join(result.stdout.splitlines()[-40:])  # a build's steps print there
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{output}\n{result.stderr}")
        return result

    def label(self, image, name):
        """The image's label `name`, or "" when the image or the label does not exist."""
        result = self("image", "inspect", "--format", f'{{{{index .Config.Labels "{name}"}}}}', image, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""


def ensure_image(podman):
    """Builds docker/Dockerfile into IMAGE unless IMAGE was built from exactly these inputs. Returns
    {"base": seconds, "build": seconds or None when skipped}."""
    started = time.monotonic()
    made = subprocess.run([os.path.join(DOCKER_DIR, "make-base-images"), "--engine", "podman",
                           "--cache", os.path.join(CACHE, "base-images")], env=podman.env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=1800)
    assert made.returncode == 0, f"docker/make-base-images failed:\n{made.stderr}"
    timings = {"base": time.monotonic() - started, "build": None}
    want = inputs_hash(made.stdout.split()[-1])
    if podman.label(IMAGE, INPUTS_LABEL) == want:
        return timings
    started = time.monotonic()
    # README's command (podman reads docker/Dockerfile.dockerignore beside the Dockerfile, as BuildKit does), plus
    # the host's network for apt and the inputs' label.
    podman("build", "--format", "docker", "--network", "host", "--label", f"{INPUTS_LABEL}={want}",
           "-f", DOCKERFILE, "-t", IMAGE, mp.SOURCE_DIR, timeout=3000)
    # Older builds' layers would pile up on a developer's machine. Tagging the builder stage (all cached: seconds)
    # keeps this build's layers of both stages out of the prune, so the next build starts from the same cache:
    # a builder rebuilt alone could compile against a newer nginx than the cached runtime has.
    podman("build", "--format", "docker", "--network", "host", "--target", "build", "-f", DOCKERFILE,
           "-t", BUILDER_IMAGE, mp.SOURCE_DIR, timeout=3000)
    timings["build"] = time.monotonic() - started
    podman("image", "prune", "--force", check=False)
    return timings


class Engine:
    """Containers and volumes of one test, all removed (by id and name) by close()."""

    def __init__(self, podman, image):
        self.podman = podman
        self.image = image
        self.containers = []
        self.volumes = []

    def volume(self):
        name = f"mp-test-{uuid.uuid4().hex[:12]}"
        self.podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def run(self, *options, command=()):
        """`podman run -d OPTIONS IMAGE COMMAND`; returns the container id."""
        cid = self.podman("run", "-d", *options, self.image, *command).stdout.strip()
        self.containers.append(cid)
        return cid

    def logs(self, cid):
        result = self.podman("logs", cid, check=False)
        return result.stdout + result.stderr

    def state(self, cid, field):
        return self.podman("inspect", "--format", f"{{{{.State.{field}}}}}", cid).stdout.strip()

    def wait_exit(self, cid, timeout=30):
        """Exit code of a container that must stop by itself within timeout seconds."""
        mp.wait_until(lambda: self.state(cid, "Status") in ("exited", "stopped"), timeout=timeout,
                      interval=0.2, what=f"container {cid[:12]} to exit")
        return int(self.state(cid, "ExitCode"))

    def close(self):
        for cid in reversed(self.containers):
            # --volumes: also the anonymous volumes of the image's VOLUME lines a test did not name
            self.podman("rm", "--force", "--volumes", "--time", "0", cid, check=False)
        for name in self.volumes:
            self.podman("volume", "rm", "--force", name, check=False)
