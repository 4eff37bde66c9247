"""Join tokens under hostile clients, each case beside a scrape loop through a healthy tunnel that must see zero
errors: keyboard-interactive without a proven key; oversized, binary, missing and extra answers; every token
refusal (wrong, unknown name, expired, revoked, replayed by its own key, spent and reused by another key, rate
limited), each with its own log reason and counter and all looking the same to the client; and guessing in one
connection, capped. The same refusals through a real OpenSSH client are in test_enrolment.py."""
import json
import os
import subprocess

import pytest

import mp
from hostile_harness import scraping, stack  # noqa: F401 (fixtures)
from ssh_harness import fingerprint, keygen

PARAMIKO_PY = "/usr/bin/python3"

# Connects from SOURCE, authenticates with KEY (expecting partial success unless MODE is "kbdint-only"), then
# answers the token prompt with what MODE says, up to TRIES keyboard-interactive attempts on this one connection;
# prints one line per step and how many prompts the server sent.
TOKEN_PROBE = r"""
import socket, sys, paramiko
port, key, source, mode, token, tries = sys.argv[1:7]
sock = socket.socket()
sock.bind((source, 0))
sock.connect(("127.0.0.1", int(port)))
t = paramiko.Transport(sock)
t.connect()
answers = {"huge": [token * 2000], "binary": ["\x00\xff" * 40 + token], "none": [], "two": [token, token],
           "token": [token], "kbdint-only": [token]}[mode]
prompts = 0
def handler(title, instructions, asked):
    global prompts
    prompts += 1
    return answers
try:
    if mode != "kbdint-only":
        print("publickey next=" + ",".join(t.auth_publickey("monitoring", paramiko.Ed25519Key.from_private_key_file(key))))
    for attempt in range(int(tries)):
        try:
            print("kbdint " + str(t.auth_interactive("monitoring", handler)))
            break
        except paramiko.AuthenticationException as e:
            print("refused " + type(e).__name__ + " " + str(e))
            if not t.is_active():
                break
except (paramiko.AuthenticationException, paramiko.SSHException, EOFError, OSError) as e:
    print("refused " + type(e).__name__ + " " + str(e))
print("prompts=" + str(prompts))
print("active=" + str(t.is_active()))
print("authenticated=" + str(t.is_authenticated()))
t.close()
"""


@pytest.fixture(scope="module")
def probe(stack):
    path = os.path.join(stack.workdir, "token_probe.py")
    with open(path, "w") as f:
        f.write(TOKEN_PROBE)
    counter = iter(range(30, 250))

    def run(mode, answer=None, key=None, tries=1, source=None):
        key = key or keygen(stack.workdir, f"prober-{mode}-{next(counter)}")
        # Each case its own address unless it asks for one: the per-address limit stays out of the way.
        source = source or f"127.0.0.{next(counter)}"
        out = subprocess.run([PARAMIKO_PY, path, str(stack.tunneld.port), key, source, mode,
                              run.token if answer is None else answer, str(tries)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout, source, key
    run.token = invite(stack, "invitee")["token"]
    return run


def invite(stack, name, *flags):
    return json.loads(stack.tunneld.tunnelctl("invite", name, "--proxy", f"127.0.0.1:{stack.tunneld.port}",
                                              "--host-key-dir", stack.tunneld.host_keys, "--json", *flags).stdout)


def keys_of(stack, name):
    return json.loads(stack.tunneld.tunnelctl("show", name, "--json").stdout)["keys"]


def refusal_reasons(stack, source):
    """The reasons of every `enrolment refused` line logged for `source`, in order."""
    marker = f"enrolment refused client={source}:"
    return [line.rsplit(" reason=", 1)[1] for line in stack.tunneld.log().splitlines() if marker in line]


def refusal_reason(stack, source):
    """The reason of the one `enrolment refused` line logged for `source` (waits for it)."""
    stack.wait_log_since(0, f"enrolment refused client={source}:")
    reasons = refusal_reasons(stack, source)
    assert len(reasons) == 1, reasons
    return reasons[0]


def test_keyboard_interactive_without_a_proven_key_is_refused(stack, scraping, probe):
    out, source, _ = probe("kbdint-only")
    assert "refused" in out and "authenticated=False" in out, out
    log = stack.wait_log_since(0, f"auth refused client={source}:")
    assert "reason=method" in log.split(f"auth refused client={source}:")[1].splitlines()[0]
    assert f"enrolment refused client={source}:" not in stack.tunneld.log()


@pytest.mark.parametrize("mode", ["huge", "binary", "none", "two"])
def test_malformed_answers_are_refused_and_bind_nothing(stack, scraping, probe, mode):
    before = stack.counter('enrolments_refused_total{reason="malformed"}')
    out, source, key = probe(mode)
    assert "publickey next=keyboard-interactive" in out and "authenticated=False" in out, out
    log = stack.wait_log_since(0, f"enrolment refused client={source}:")
    assert "reason=malformed" in log.split(f"enrolment refused client={source}:")[1].splitlines()[0]
    stack.wait_counter('enrolments_refused_total{reason="malformed"}', before + 1)
    assert keys_of(stack, "invitee") == []
    assert stack.tunneld.proc.poll() is None


def token_refused_for(stack, probe, reason):
    """A token (and the key to present it with, None for a fresh one) that tunneld must refuse with `reason`."""
    name = f"h-{reason.replace('_', '-')}"
    if reason == "wrong_token":
        invite(stack, name)
        return name + "." + invite(stack, name + "-other")["token"].split(".", 1)[1], None
    if reason == "unknown_name":  # a real secret, under a name never invited
        return "h-nosuch." + invite(stack, name)["token"].split(".", 1)[1], None
    if reason == "expired":
        token = invite(stack, name, "--ttl", "1s")["token"]
        mp.wait_until(lambda: any(i["name"] == name and i["state"] == "expired" for i in
                                  json.loads(stack.tunneld.tunnelctl("invites", "--json").stdout)), 5,
                      what=f"{name}'s invitation expired")
        return token, None
    if reason == "revoked":
        token = invite(stack, name)["token"]
        stack.tunneld.tunnelctl("invite", "rm", name)
        return token, None
    token = invite(stack, name, "--uses", "2" if reason == "replayed" else "1")["token"]
    out, _, key = probe("token", token)
    assert "authenticated=True" in out, out
    if reason == "replayed":  # the operator unbinds the key; it presents the same token again
        stack.tunneld.tunnelctl("key", "rm", name, fingerprint(key + ".pub"))
        return token, key
    return token, None  # spent: another key presents the used-up token


# What the client sees for any refused token: the same failure, so it never learns whether a name exists.
REFUSED = "refused AuthenticationException Authentication failed."


@pytest.mark.parametrize("reason", ["wrong_token", "unknown_name", "expired", "revoked", "replayed", "spent"])
def test_each_token_refusal_is_logged_and_counted_by_reason_and_binds_nothing(stack, scraping, probe, reason):
    token, key = token_refused_for(stack, probe, reason)
    counter = f'enrolments_refused_total{{reason="{reason}"}}'
    before = stack.counter(counter)
    bound_before = stack.tunneld.tunnelctl("ls", "--json").stdout
    out, source, key = probe("token", token, key)
    assert "publickey next=keyboard-interactive" in out and "prompts=1" in out, out
    assert REFUSED in out and "authenticated=False" in out, out
    assert refusal_reason(stack, source) == reason
    stack.wait_counter(counter, before + 1)
    assert stack.tunneld.tunnelctl("ls", "--json").stdout == bound_before  # no key bound, nothing else changed
    assert fingerprint(key + ".pub") not in bound_before or reason == "replayed"
    assert stack.tunneld.proc.poll() is None


def test_token_attempts_are_rate_limited_per_source_address(stack, scraping, probe):
    """5 attempts at once from one address (each its own connection), then one per 12 s: the 6th gets no prompt."""
    wrong = "invitee." + "A" * 43
    source = "127.0.1.7"
    before = stack.counter('enrolments_refused_total{reason="rate_limited"}')
    for attempt in range(5):
        out, _, _ = probe("token", wrong, source=source)
        assert "prompts=1" in out and REFUSED in out, (attempt, out)
    out, _, _ = probe("token", probe.token, source=source)  # even the right token: the address must wait
    assert "prompts=0" in out and "authenticated=False" in out, out
    stack.wait_counter('enrolments_refused_total{reason="rate_limited"}', before + 1)
    reasons = refusal_reasons(stack, source)
    assert reasons == ["wrong_token"] * 5 + ["rate_limited"], reasons
    assert keys_of(stack, "invitee") == []


def test_guessing_in_one_connection_is_capped(stack, scraping, probe):
    """Up to 20 guesses on one connection: 5 prompts (the address's burst), the 6th failure closes the session."""
    secret = probe.token.split(".", 1)[1]
    wrong = "invitee." + ("A" if secret[0] != "A" else "B") + secret[1:]
    out, source, _ = probe("token", wrong, tries=20)
    assert "prompts=5" in out and "active=False" in out and "authenticated=False" in out, out
    # The server's count is the one that matters (below): a 7th attempt may be in flight when it closes, and
    # paramiko reports that as one more failure or a reset.
    assert out.count("refused ") <= 7, out
    reasons = refusal_reasons(stack, source)
    assert reasons == ["wrong_token"] * 5 + ["rate_limited"], reasons
    stack.wait_log_since(0, f"disconnect client={source}:")
    disconnect = next(line for line in stack.tunneld.log().splitlines() if f"disconnect client={source}:" in line)
    assert 'reason="too many authentication failures"' in disconnect, disconnect
    # The right token from a fresh key and address still works afterwards: guessing did not spend it.
    out, _, key = probe("token")
    assert "authenticated=True" in out, out
    assert keys_of(stack, "invitee") == [fingerprint(key + ".pub")]
