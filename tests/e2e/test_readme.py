"""The README's commands are run here, so the README cannot rot."""
import os
import re
import subprocess
import urllib.request

import mp

README = os.path.join(mp.SOURCE_DIR, "README.md")


def shell_blocks():
    text = open(README).read()
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def quick_start_commands():
    section = open(README).read().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_ci_runs_the_readme_test_command():
    demo, tests = quick_start_commands()[:2]
    ci = [line for line in open(os.path.join(mp.SOURCE_DIR, ".ci", "run")).read().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci[-1] == tests
    assert "ctest" in tests and "install-deps.sh test" in tests


def test_demo_command_starts_a_scrapeable_stack(workdir):
    demo = quick_start_commands()[0]
    # The install and build steps are the test command's (this suite runs after them); run the demo itself on
    # free ports so it cannot clash with anything else on the machine.
    steps = [s.strip() for s in demo.split("&&")]
    assert steps[0] == "./docker/install-deps.sh test" and steps[-1] == "docker/demo"
    http = mp.free_port()
    env = {**os.environ, "MP_BUILD_DIR": mp.BUILD_DIR, "MP_DEMO_DIR": os.path.join(workdir, "demo"),
           "MP_DEMO_SSH_PORT": str(mp.free_port()), "MP_DEMO_HTTP_PORT": str(http),
           "MP_DEMO_EXPORTER_PORT": str(mp.free_port())}
    try:
        out = subprocess.run([os.path.join(mp.SOURCE_DIR, "docker", "demo")], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"curl -s http://127.0.0.1:{http}/demo-host/metrics" in out.stdout
        body = urllib.request.urlopen(f"http://127.0.0.1:{http}/demo-host/metrics", timeout=10).read().decode()
        assert "node_" in body or "demo_up 1" in body
    finally:
        stop = subprocess.run([os.path.join(mp.SOURCE_DIR, "docker", "demo"), "stop"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert not mp.port_open(http)
