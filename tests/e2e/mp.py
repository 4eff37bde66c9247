"""Shared plumbing for end-to-end tests: where the built programs are, free loopback ports, processes that are
always stopped by pid, polling with a deadline instead of sleeping, CPU use measured against a spinning reference,
Prometheus expositions read as values, and README's sections (the user documentation the programs are held to)."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD_DIR = os.environ.get("MP_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE_DIR = os.environ.get("MP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def program(name):
    """Path of a built program (tunneld, tunnelctl) or module (ngx_http_tunnel_module.so)."""
    for sub in ("tunneld/src", "tunneld/tunnelctl", "ngx_module", ""):
        p = os.path.join(BUILD_DIR, sub, name)
        if os.path.isfile(p):  # <build>/tunneld is a directory, the program is <build>/tunneld/src/tunneld
            return os.path.abspath(p)
    raise FileNotFoundError(f"{name} not built under {BUILD_DIR}")


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls `predicate` until it returns a truthy value (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may fail while a server starts
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" +
                                 (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Processes:
    """Starts programs and guarantees each is stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, args, name=None, env=None, **kw):
        name = name or os.path.basename(args[0])
        log = open(os.path.join(self.workdir, f"{name}.{len(self.procs)}.log"), "wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                             stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        p.log_path = log.name
        p.log_file = log
        self.procs.append(p)
        return p

    @staticmethod
    def log_text(p):
        p.log_file.flush()
        with open(p.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            except ProcessLookupError:
                pass
        return p.returncode

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)
            p.log_file.close()


def cpu_seconds(pid):
    """User + system CPU time of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SPINNER = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


def cpu_share_beside_a_spinner(pid, seconds=1.0):
    """CPU `pid` used while a reference process spun for `seconds`, as a fraction of the CPU the spinner got. On 2
    shared cores a spinning process may get far less than a core, so an absolute figure can pass while it spins;
    beside the spinner, a process at 100 % scores about 1 however loaded the machine is, an idle one about 0."""
    before = cpu_seconds(pid)
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER, str(seconds)])
    _, status, usage = os.wait4(spinner.pid, 0)  # its own CPU time, from the kernel, as it is reaped
    spinner.returncode = os.waitstatus_to_exitcode(status)
    used = cpu_seconds(pid) - before
    assert spinner.returncode == 0, spinner.returncode
    return used / max(usage.ru_utime + usage.ru_stime, 0.01)


def make_workdir(prefix="mp-e2e-"):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)  # nginx workers (nobody) must traverse it
    return d


def remove_workdir(d):
    shutil.rmtree(d, ignore_errors=True)


_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def metric_samples(exposition):
    """The samples of a Prometheus text exposition: {(name, frozenset of (label, value)): float}, label values as
    written (escapes kept). A line that is not a sample, or a series given twice, fails the test."""
    samples = {}
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        labels = _LABEL.findall(m.group(2) or "")
        assert ",".join(f'{k}="{v}"' for k, v in labels) == (m.group(2) or ""), f"bad labels: {line!r}"
        key = (m.group(1), frozenset(labels))
        assert key not in samples, f"series given twice: {line!r}"
        samples[key] = float(m.group(3))
    return samples


def metric_value(exposition, name, **labels):
    """The value of the one series `name{labels}` in an exposition (an AssertionError naming it when absent)."""
    key = (name, frozenset(labels.items()))
    samples = metric_samples(exposition)
    assert key in samples, f"no series {name}{labels} in:\n{exposition}"
    return samples[key]


def readme_reference(title):
    """What README.md's `## title` section documents as reference: (its code blocks, the first cell of each table
    row), leaving out the prose, which may name other programs' flags."""
    text = open(os.path.join(SOURCE_DIR, "README.md")).read()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```\n(.*?)^```", section, re.S | re.M), re.findall(r"^\| `(.+?)` \|", section, re.M)


def long_flags(text):
    """Every `--flag` named in a text."""
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", text))
