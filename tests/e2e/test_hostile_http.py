"""Port 80 under hostile requests, sent raw so nothing is normalised on the way: each gets the status
of ngx_module/README.md "Outcomes" (or nginx's own 400 when nginx rejects the request line before the module),
no invalid name reaches the registry or gets a counter entry, and the healthy tunnel is scraped with zero errors
throughout. test_module_routing.py already covers the name rule, %ff, %22, "/..", long paths and %2f in a name
followed by a path; this file adds the other hostile requests and the registry/counter side."""
import re
import socket

import hostile_harness as hh
from hostile_harness import scraping, stack  # noqa: F401 (fixtures)

LONG = "a" * 1000


def raw_request(port, request_bytes, timeout=10):
    """Sends bytes as they are and returns (status, headers text, body) of the first response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request_bytes)
        data, _ = hh.read_until_closed(s, limit=1 << 20, timeout=timeout)
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else None
    return status, head.decode(errors="replace"), rest


def get(port, target, method="GET", extra=b""):
    return raw_request(port, method.encode() + b" " + target + b" HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n"
                       + extra + b"\r\n")


# (request target as sent, expected status, body starts with) — bodies are the module's documented texts.
CASES = [
    (b"/healthy/../../x", 400, b"<html>"),                    # climbs above the root: nginx's own 400
    (b"/%2e%2e/metrics", 400, b"<html>"),                     # the same, percent-encoded
    (b"/%2e%2e%2fhealthy/bytes/1", 400, b"<html>"),           # decodes to /../healthy: nginx's 400
    (b"/.%2e/healthy/bytes/1", 400, b"<html>"),
    (b"/%00/metrics", 400, b"<html>"),                        # NUL: nginx refuses it in the URI
    (b"/healthy%00/bytes/1", 400, b"<html>"),
    (b"/" + LONG.encode() + b"/metrics", 400, b"invalid target name"),
    (b"/" + LONG.encode(), 400, b"invalid target name"),
    ("/w\u00e9b/metrics".encode(), 400, b"invalid target name"),         # raw UTF-8
    (b"/%E2%80%AEhealthy/metrics", 400, b"invalid target name"),          # right-to-left override
    (b"/\xff\xfe/metrics", 400, b"invalid target name"),                  # raw bytes that are not UTF-8
    (b"/", 400, b"invalid target name"),                                  # empty name
    (b"//", 400, b"invalid target name"),
    (b"//metrics", 404, b'unknown target "metrics"'),                     # merge_slashes: //x is /x
    (b"//healthy/bytes/5", 200, b"\x07\x8a"),                             # ... so this one is served
    (b"/nope%2Fhealthy/bytes/1", 404, b'unknown target "nope"'),          # a decoded / ends the name
    (b"http://evil.example/healthy/bytes/5", 200, b"\x07\x8a"),           # absolute form: path decides
    (b"http://evil.example/../healthy/x", 400, b"<html>"),
    (b"http://evil.example/BAD/x", 400, b"invalid target name"),
    (b"http://evil.example", 400, b"invalid target name"),               # absolute form, empty path
    (b"*", 400, b"<html>"),                                              # OPTIONS-style target on GET
]


def test_hostile_request_targets_get_their_documented_status(stack, scraping):
    names_before = stack.registry_names()
    counted_before = stack.nginx_counters()
    failures = []
    for target, status, body_start in CASES:
        got, head, body = get(stack.nginx.port, target)
        if got != status or not body.startswith(body_start):
            failures.append((target[:60], got, status, body[:80]))
    assert not failures, failures
    # Nothing new in the registry, and no counter slot for a name that is not declared.
    assert stack.registry_names() == names_before
    counted = stack.nginx_counters()
    assert set(counted["targets"]) <= {hh.HEALTHY, "owned", "open"} | set(names_before), counted["targets"].keys()
    invalid = counted["totals"]["outcomes"]["invalid_name"] - counted_before["totals"]["outcomes"]["invalid_name"]
    assert invalid == sum(1 for _, s, b in CASES if b == b"invalid target name"), counted["totals"]
    assert stack.nginx.worker_pids() and stack.nginx.error_log().count("[alert]") == 0


def test_invalid_name_text_is_escaped_and_bounded(stack, scraping):
    status, _, body = get(stack.nginx.port, b"/" + LONG.encode() + b"/metrics")
    assert status == 400 and len(body) < 300, body  # the 1,000-character name is cut, not echoed whole
    assert body.startswith(b'invalid target name "' + b"a" * 64 + b'..."'), body[:100]
    # an encoded CR LF in the name cannot split the response into an injected header
    status, head, body = get(stack.nginx.port, b"/a%0d%0aSet-Cookie:%20x=1/metrics")
    assert status == 400, (head, body)
    assert "Set-Cookie" not in head and body.count(b"\n") == 1 and b"\r" not in body, (head, body)


def test_head_gets_status_and_length_without_body(stack, scraping):
    status, head, body = get(stack.nginx.port, b"/healthy/bytes/100", method="HEAD")
    # The exporter stand-in has no HEAD handler: whatever it answers reaches the client, never a body.
    assert status in (200, 501) and body == b"", (status, head)
    for target, expected in ((b"/BAD/x", 400), (b"/nope/x", 404), (b"/open/x", 503)):
        status, head, body = get(stack.nginx.port, target, method="HEAD")
        assert (status, body) == (expected, b""), (target, status, head, body)
        assert "Content-Length: " in head


def test_post_with_a_body_gets_the_same_outcomes(stack, scraping):
    payload = b"x" * 5000
    length = b"Content-Length: %d\r\n" % len(payload)
    for target, expected, text in ((b"/BAD/x", 400, b"invalid target name"), (b"/nope/x", 404, b"unknown target"),
                                   (b"/open/x", 503, b'target "open" is not connected')):
        status, head, body = raw_request(stack.nginx.port, b"POST " + target + b" HTTP/1.1\r\nHost: p\r\n" + length
                                         + b"Connection: close\r\n\r\n" + payload)
        assert status == expected and body.startswith(text), (target, status, body[:100])
    # Through a live tunnel the method is passed on: the exporter stand-in answers POST with 501.
    status, _, _ = raw_request(stack.nginx.port, b"POST /healthy/bytes/1 HTTP/1.1\r\nHost: p\r\n" + length
                               + b"Connection: close\r\n\r\n" + payload)
    assert status == 501
    assert stack.registry_names() == sorted(set(stack.registry_names()))


def test_pipelined_hostile_requests_on_one_connection(stack, scraping):
    """Bad requests pipelined with good ones: each answered in order, the connection survives the module's own
    400/404/503 answers, and the good ones are served."""
    reqs = b"".join(b"GET " + t + b" HTTP/1.1\r\nHost: p\r\n\r\n" for t in
                    (b"/nope/x", b"/healthy/bytes/3", b"/open/x", b"/healthy/bytes/4", b"/" + LONG.encode(),
                     b"/healthy/bytes/4"))
    reqs += b"GET /healthy/bytes/1 HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", stack.nginx.port), timeout=10) as s:
        s.sendall(reqs)
        data, closed = hh.read_until_closed(s, limit=1 << 20, timeout=10)
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [404, 200, 503, 200, 400, 200, 200], (statuses, data[-300:])
    assert closed
