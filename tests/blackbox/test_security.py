"""Hostile bytes: request smuggling attempts from clients, broken responses
from backends, oversized heads."""
import subprocess
import time

import pytest

from helpers import (SLOW, RawBackend, backend, fetch, httproute, match, raw_exchange, ref, rule,
                     status_of)

BASE = b"GET /s HTTP/1.1\r\nHost: x\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

SMUGGLING = {
    "bare-cr-in-value": BASE + b"X-A: a\rb\r\n\r\n",
    "cr-head-end": BASE + b"\rX" + SMUGGLED,
    "obs-fold": BASE + b"X-A: a\r\n b\r\n\r\n",
    "cl-and-te": (b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n" + SMUGGLED),
    "te-and-cl": (b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                  b"0\r\n\r\n" + SMUGGLED),
    "two-content-lengths": (b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n"
                            b"abcd" + SMUGGLED),
    "content-length-junk": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd",
    "content-length-negative": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "bad-chunk-size": (b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nabc\r\n0\r\n\r\n"),
    "chunked-not-last": (b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                         b"0\r\n\r\n"),
    "nul-in-header": BASE + b"X-A: a\x00b\r\n\r\n",
    "ctl-in-header": BASE + b"X-A: a\x01b\r\n\r\n",
    "space-before-colon": BASE + b"X-A : b\r\n\r\n",
    "bare-lf-lines": b"GET /s HTTP/1.1\nHost: x\n\n",
    "ctl-in-target": b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
    "no-host-http11": b"GET /s HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET /s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
}


@pytest.fixture
def proxied(env):
    a = env.echo("a")
    objs = backend("a", a.port) + [httproute("r", [rule([match("/")], [ref("a")])])]
    p = env.pylon(objs, args=["--max-header-bytes", "8192"])
    return p, a


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_rejected_400_and_closed(proxied, name):
    p, a = proxied
    raw, closed = raw_exchange(p.port, SMUGGLING[name], timeout=3)
    assert status_of(raw) == 400, f"{name}: {raw[:300]!r}"
    assert raw.count(b"HTTP/1.1 ") == 1, f"{name}: more than one response: {raw[:600]!r}"
    assert closed, f"{name}: connection left open after 400"
    assert "/smuggled" not in a.stats()["recent"], f"{name}: smuggled request reached the backend"


def test_header_too_large_431(proxied):
    p, a = proxied
    raw, closed = raw_exchange(p.port, BASE + b"X-Big: " + b"a" * 10000 + b"\r\n\r\n", timeout=3)
    assert status_of(raw) == 431, raw[:300]
    assert closed
    many = BASE + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(200)) + b"\r\n"
    raw, closed = raw_exchange(p.port, many, timeout=3)
    assert status_of(raw) == 431, raw[:300]
    # just under the limit is fine
    r = fetch(p.port, "/ok", headers={"X-Big": "a" * 6000})
    assert r.status == 200, r


def test_huge_request_line_rejected(proxied):
    p, _ = proxied
    raw, closed = raw_exchange(p.port, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert status_of(raw) in (414, 431, 400), raw[:300]
    assert closed


def test_valid_chunked_request_still_works(proxied):
    p, a = proxied
    req = (b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
           b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw, _ = raw_exchange(p.port, req, timeout=3)
    assert raw.count(b"HTTP/1.1 200") == 2, raw[:1000]
    assert b'"body_bytes": 11' in raw, raw[:1000]


EVIL_RESPONSES = {
    "bare-cr-in-header": b"HTTP/1.1 200 OK\r\nX-Evil: a\rb\r\nContent-Length: 2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-Evil: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "nul-in-header": b"HTTP/1.1 200 OK\r\nX-Evil: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "garbage-status-line": b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
    "not-http": b"SSH-2.0-OpenSSH_9.2\r\n",
    "closed-without-response": b"",
}


@pytest.mark.parametrize("name", sorted(EVIL_RESPONSES))
def test_hostile_backend_response_502(env, name):
    evil = RawBackend(EVIL_RESPONSES[name])
    try:
        objs = backend("evil", evil.port) + [httproute("r", [rule([match("/")], [ref("evil")])])]
        p = env.pylon(objs)
        raw, _ = raw_exchange(p.port, b"GET /e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        assert status_of(raw) == 502, f"{name}: {raw[:300]!r}"
        assert b"X-Evil" not in raw and b"a\rb" not in raw
        assert evil.requests, "the request never reached the backend"
        # pylon survives and keeps serving
        raw, _ = raw_exchange(p.port, b"GET /e2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        assert status_of(raw) == 502
        assert p.admin("/healthz").status == 200
    finally:
        evil.stop()


def test_backend_sends_too_much_head(env):
    evil = RawBackend(b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 200000 + b"\r\n\r\n")
    try:
        objs = backend("evil", evil.port) + [httproute("r", [rule([match("/")], [ref("evil")])])]
        p = env.pylon(objs)
        t = time.monotonic()
        raw, _ = raw_exchange(p.port, b"GET /e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        assert status_of(raw) == 502, raw[:300]
        assert time.monotonic() - t < 3 * SLOW
    finally:
        evil.stop()


DOT_PATHS = ["/a/../b", "/a/./b", "/a/%2e%2e/b", "/a/%2E%2e", "/a/.%2e/b", "/a/%2e/b?x=1"]


@pytest.mark.parametrize("path", DOT_PATHS)
def test_dot_segments_rejected(proxied, path):
    """A "." or ".." segment, dots written as is or percent-encoded, could climb out of the prefix a
    route matched once a backend resolves it: 400 on HTTP/1.1 and HTTP/2, the backend never sees it."""
    p, a = proxied
    raw, _ = raw_exchange(p.port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert status_of(raw) == 400, f"{path}: {raw[:300]!r}"
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--path-as-is", "-o", "/dev/null",
                        "-w", "%{http_version} %{http_code}", f"http://127.0.0.1:{p.port}{path}"],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout == "2 400", (path, r.stdout, r.stderr)
    assert not [x for x in a.stats()["recent"] if "/b" in x or x.startswith("/a/")], a.stats()["recent"]
    # dots that are not a whole segment are ordinary characters
    raw, _ = raw_exchange(p.port, b"GET /a/%2e%2e%2e/b...c HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert status_of(raw) == 200, raw[:300]
