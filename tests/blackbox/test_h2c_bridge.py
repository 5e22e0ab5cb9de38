"""HTTP/1.x clients to backends whose Service port says appProtocol
kubernetes.io/h2c (issue 6): pylon bridges each request to an HTTP/2 stream
(prior knowledge) and the response back to HTTP/1.1. The backend is
tests/h2cecho, a Go standard-library h2c server that, like the conformance
echo server, answers HTTP/1.x with 400 "Expected h2c request"; it is built
with the local Go toolchain into ~/.cache/pylon/bin (skipped without Go).
Also: WebSocket over HTTP/1.1 to an appProtocol kubernetes.io/ws port."""
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (REPO, SANITIZER, SLOW, Client, Echo, LoopbackServer, endpointslice, fetch, free_port,
                     httproute, match, raw_exchange, ref, rule, status_of, wait_until)
from test_conn import MB, RssSampler, ws_accept, ws_key

SRC = REPO / "tests" / "h2cecho"


@pytest.fixture(scope="module")
def h2c_bin():
    go = shutil.which("go")
    if not go:
        pytest.skip("go not installed: the h2c test backend cannot be built")
    ver = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60).stdout
    m = re.match(r"go(\d+)\.(\d+)", ver)
    if not m or (int(m.group(1)), int(m.group(2))) < (1, 24):
        pytest.skip(f"go {ver.strip()} is older than 1.24 (net/http h2c server)")
    files = sorted(p for p in SRC.iterdir() if p.suffix in (".go", ".mod"))
    tag = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:12]
    cache = Path(os.environ.get("PYLON_CACHE", Path.home() / ".cache" / "pylon")) / "bin"
    out = cache / f"h2c-echo-{tag}"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".h2c-echo-{tag}.{os.getpid()}"
        r = subprocess.run([go, "build", "-o", str(tmp), "."], cwd=SRC, capture_output=True, text=True,
                           timeout=600, env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
        assert r.returncode == 0, f"building tests/h2cecho failed:\n{r.stderr[-2000:]}"
        os.replace(tmp, out)
    return str(out)


def h2c_echo(env, binary):
    e = Echo("h2c", env._log("h2c-echo"), cmd=[binary])
    env.procs.append(e)
    return e


def app_service(name, ports, app="kubernetes.io/h2c"):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "appProtocol": app}]}}
    return [svc] + endpointslice(name, ports)


def bridged(env, h2c_bin, workers=2):
    """pylon with an HTTPRoute to an h2c echo (Service "h2"); returns (pylon, echo)."""
    e = h2c_echo(env, h2c_bin)
    objs = app_service("h2", [e.port]) + [httproute("r", [rule([match("/")], [ref("h2")])])]
    return env.pylon(objs, workers=workers), e


def curl(*args, timeout=60):
    r = subprocess.run(["curl", "-sS", "--http1.1", *args], capture_output=True, timeout=timeout * SLOW)
    assert r.returncode == 0, r.stderr
    return r.stdout


def read_all(sock):
    parts = []
    while True:
        d = sock.recv(1 << 20)
        if not d:
            return b"".join(parts)
        parts.append(d)


def dechunk(body):
    """A chunked body -> (payload, trailer lines)."""
    out = []
    i = 0
    while True:
        j = body.index(b"\r\n", i)
        n = int(body[i:j].split(b";")[0], 16)
        i = j + 2
        if n == 0:
            end = body.index(b"\r\n\r\n", i - 2)
            return b"".join(out), [t.decode() for t in body[i:end].split(b"\r\n") if t]
        out.append(body[i:i + n])
        assert body[i + n:i + n + 2] == b"\r\n"
        i += n + 2


def pattern(n):
    return (bytes(range(ord("a"), ord("z") + 1)) * (n // 26 + 1))[:n]


def test_get_and_head_fields_filters(env, h2c_bin):
    # without the bridge this backend answers 400 "Expected h2c request"
    e = h2c_echo(env, h2c_bin)
    r = fetch(e.port, "/direct")
    assert r.status == 400 and b"Expected h2c request" in r.body, r
    filters = [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {
            "set": [{"name": "X-Set", "value": "s"}], "add": [{"name": "X-Add", "value": "a"}],
            "remove": ["X-Remove"]}},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "X-Resp", "value": "r"}]}},
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}},
    ]
    objs = app_service("h2", [e.port]) + [httproute("r", [rule([match("/old")], [ref("h2")], filters=filters),
                                                          rule([match("/")], [ref("h2")])])]
    p = env.pylon(objs)
    r = p.get("/old/x?q=1", host="app.example:8080", headers={
        "X-Custom": "V", "X-Remove": "gone", "X-Set": "client", "Connection": "keep-alive, X-Hop",
        "X-Hop": "h", "Keep-Alive": "timeout=5", "TE": "trailers, deflate;q=0.5", "X-Forwarded-For": "10.1.1.1"})
    assert r.status == 200, (r, p.log()[-2000:])
    j = r.json()
    assert j["proto"] == "HTTP/2.0" and j["method"] == "GET", j
    assert j["path"] == "/new/x?q=1" and j["host"] == "app.example:8080", j
    h = j["headers"]
    assert h["x-custom"] == ["V"] and h["x-set"] == ["s"] and h["x-add"] == ["a"], h
    assert "x-remove" not in h and "x-hop" not in h and "keep-alive" not in h and "connection" not in h, h
    assert h["te"] == ["trailers"], h
    assert h["x-forwarded-for"] == ["10.1.1.1, 127.0.0.1"] and h["x-forwarded-proto"] == ["http"], h
    assert r.header("X-Resp") == "r" and r.header("Content-Type") == "application/json", r
    assert int(r.header("Content-Length")) == len(r.body), r
    # HEAD: the backend's Content-Length, no body
    r = p.get("/head", method="HEAD")
    assert r.status == 200 and r.body == b"" and int(r.header("Content-Length")) > 0, r
    # a status of the backend's, and a 1xx interim response passed on to an HTTP/1.1 client
    assert p.get("/status?code=418").status == 418
    raw, _ = raw_exchange(p.port, b"GET /early HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
    assert raw.startswith(b"HTTP/1.1 103 ") and b"\r\nlink: </style.css>; rel=preload\r\n" in raw.lower(), raw
    assert b"\r\n\r\nHTTP/1.1 200 " in raw, raw


def test_post_5mb_content_length_and_chunked(env, h2c_bin, tmp_path):
    p, _ = bridged(env, h2c_bin)
    data = os.urandom(5 * MB)
    f = tmp_path / "body"
    f.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    url = f"http://127.0.0.1:{p.port}/up"
    for extra, cl in (([], 5 * MB), (["-H", "Transfer-Encoding: chunked"], -1)):
        j = json.loads(curl("--data-binary", f"@{f}", *extra, url))
        assert j["method"] == "POST" and j["body_len"] == 5 * MB and j["body_sha256"] == want, j
        assert j["content_length"] == cl, j
    # a body that is not there yet when the head arrives, then a slow trickle
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10 * SLOW)
    s.sendall(b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
    for part in (b"01234", b"56789"):
        time.sleep(0.2)
        s.sendall(part)
    raw = read_all(s)
    s.close()
    j = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert j["body_len"] == 10 and j["body_sha256"] == hashlib.sha256(b"0123456789").hexdigest(), j


@pytest.mark.skipif(bool(SANITIZER), reason="RSS is meaningless under sanitizers")
def test_large_response_bounded_memory(env, h2c_bin):
    p, _ = bridged(env, h2c_bin)
    for _ in range(3):
        assert p.get("/warm").status == 200
    base = p.rss_kb()
    s = RssSampler(p)
    try:
        for cl in ("1", "0"):
            out = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                       f"http://127.0.0.1:{p.port}/big?n={100 * MB}&cl={cl}", timeout=120).decode()
            assert out == f"200 {100 * MB}", out
        # a client that does not read for a while: pylon holds a stream window, not the response
        sock = socket.create_connection(("127.0.0.1", p.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (50 * MB))
        time.sleep(1.5)
        mid = p.rss_kb()
        raw = read_all(sock)
        sock.close()
        head, body = raw.split(b"\r\n\r\n", 1)
        assert status_of(head) == 200 and b"transfer-encoding: chunked" in head.lower(), head
        payload, _ = dechunk(body)
        assert len(payload) == 50 * MB and payload == pattern(50 * MB)
    finally:
        peak = s.done()
    growth_mb = (peak - base) / 1024
    assert growth_mb < 32, f"RSS grew {growth_mb:.1f} MB (base {base} kB, peak {peak} kB, stalled {mid} kB)"


def test_trailers_to_chunked_client(env, h2c_bin):
    p, _ = bridged(env, h2c_bin)
    raw, closed = raw_exchange(p.port, b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n"
                               b"Connection: close\r\n\r\n", timeout=5)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert status_of(head) == 200 and b"transfer-encoding: chunked" in head.lower(), head
    payload, trailers = dechunk(body)
    assert payload == b"body with trailers\n", payload
    want = hashlib.sha256(payload).hexdigest()
    assert sorted(trailers) == sorted([f"x-sum: {want}", "x-end: yes"]), trailers
    # curl sees them too
    out = curl("-D", "-", "-o", "/dev/null", "-H", "TE: trailers", f"http://127.0.0.1:{p.port}/trailers").decode()
    head, tail = out.split("\r\n\r\n", 1)
    assert sorted(tail.split()) == sorted(["x-end:", "yes", "x-sum:", want]), out
    # HTTP/1.0: close-delimited, no trailer section
    raw, closed = raw_exchange(p.port, b"GET /trailers HTTP/1.0\r\nHost: x\r\n\r\n", timeout=5)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert closed and status_of(head) == 200 and b"chunked" not in head.lower(), head
    assert body == b"body with trailers\n", body


def test_http10_client(env, h2c_bin):
    p, _ = bridged(env, h2c_bin)
    # no Content-Length from the backend: close-delimited
    raw, closed = raw_exchange(p.port, b"GET /big?n=300000 HTTP/1.0\r\nHost: x\r\n\r\n", timeout=5)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert closed and status_of(head) == 200, head
    assert b"content-length" not in head.lower() and b"chunked" not in head.lower(), head
    assert body == pattern(300000)
    # with Content-Length and keep-alive: two requests on one connection
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5 * SLOW)
    for i in range(2):
        s.sendall(b"GET /big?n=1000&cl=1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 1000:
            d = s.recv(65536)
            assert d, (i, data)
            data += d
        head, body = data.split(b"\r\n\r\n", 1)
        assert b"content-length: 1000" in head.lower() and b"connection: keep-alive" in head.lower(), head
        assert body == pattern(1000)
    s.close()
    # no Host at all (HTTP/1.0 allows it)
    raw, _ = raw_exchange(p.port, b"GET /nohost HTTP/1.0\r\n\r\n", timeout=5)
    assert status_of(raw) == 200, raw[:300]


def test_keepalive_reuse(env, h2c_bin):
    p, _ = bridged(env, h2c_bin)
    c = Client(p.port)
    for i in range(30):
        body = b"x" * i if i % 2 else None
        r = c.get(f"/k{i}", method="POST" if body else "GET", body=body)
        assert r.status == 200 and r.json()["path"] == f"/k{i}" and r.json()["body_len"] == len(body or b""), r
    c.close()
    url = f"http://127.0.0.1:{p.port}"
    out = subprocess.run(["curl", "-sv", "--http1.1", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                          f"{url}/a", f"{url}/big?n=100000", f"{url}/trailers"],
                         capture_output=True, text=True, timeout=20 * SLOW)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("Re-using existing connection") == 2, out.stderr


def test_client_gone_mid_exchange(env, h2c_bin):
    p, _ = bridged(env, h2c_bin, workers=1)
    for _ in range(3):
        # mid-response
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5 * SLOW)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (50 * MB))
        got = 0
        while got < 200000:
            got += len(s.recv(65536))
        s.close()
        # mid-upload
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5 * SLOW)
        s.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (10 * MB) + b"x" * MB)
        s.close()
    # the pool's sessions are still good, and nothing leaked into the next exchanges
    c = Client(p.port)
    for i in range(5):
        r = c.get(f"/after{i}", method="POST", body=b"y" * 100000)
        assert r.status == 200 and r.json()["body_len"] == 100000, r
    c.close()


def test_backend_down_retry_and_timeout(env, h2c_bin):
    e = h2c_echo(env, h2c_bin)
    dead = free_port()
    objs = (app_service("h2", [e.port, dead]) + app_service("down", [free_port()]) +
            [httproute("r", [rule([match("/down")], [ref("down")]),
                             rule([match("/slow")], [ref("h2")], timeouts={"request": "500ms"}),
                             rule([match("/")], [ref("h2")])])])
    p = env.pylon(objs, args=["--backend-timeout", "1000"])
    r = p.get("/down/x")
    assert r.status == 502, r
    wait_until(lambda: re.search(r'"GET /down/x" 502: .*h2c|"GET /down/x" 502: connect', p.log()), 5,
               what="502 log line")
    for i in range(4):
        r = p.get(f"/x/{i}")
        assert r.status == 200 and r.json()["path"] == f"/x/{i}", r
    assert re.search(r"connect to 127\.0\.0\.1:%d failed: .*; trying 127\.0\.0\.1:%d" % (dead, e.port), p.log()), \
        p.log()[-3000:]
    t0 = time.monotonic()
    r = p.get("/slow/sleep?ms=5000")
    assert r.status == 504 and time.monotonic() - t0 < 3 * SLOW, r
    wait_until(lambda: "route timeout waiting for" in p.log(), 5, what="timeout log line")
    t0 = time.monotonic()
    r = p.get("/x/sleep?ms=5000")
    assert r.status == 504 and time.monotonic() - t0 < 3 * SLOW, r
    wait_until(lambda: "backend timeout waiting for 127.0.0.1:%d" % e.port in p.log(), 5, what="log line")


def test_websocket_to_h2c_refused_h2c_upgrade_ignored(env, h2c_bin):
    p, _ = bridged(env, h2c_bin)
    raw, closed = raw_exchange(p.port, (f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {ws_key()}\r\n"
                                        f"Sec-WebSocket-Version: 13\r\n\r\n").encode(), timeout=5)
    assert status_of(raw) == 501 and closed, raw
    wait_until(lambda: re.search(r'"GET /ws" 501: Upgrade to an h2c backend is not supported', p.log()), 5,
               what="501 log line")
    # curl --http2 on http:// asks for Upgrade: h2c: a bodyless request switches the client connection
    # (test_h2_upgrade.py); with a body the upgrade is ignored and the bridge answers as HTTP/1.1
    for args, version in (([], "2"), (["-d", "x"], "1.1")):
        out = subprocess.run(["curl", "-sS", "--http2", "-w", "\n%{http_version}", *args,
                              f"http://127.0.0.1:{p.port}/up"], capture_output=True, timeout=20 * SLOW)
        body, _, tail = out.stdout.decode().rpartition("\n")
        assert out.returncode == 0 and tail == version and json.loads(body)["path"] == "/up", out


def test_request_trailers_to_h2c_backend(env, h2c_bin):
    # request trailers reach the h2c backend in a HEADERS frame after the body, from a chunked HTTP/1.1
    # request and from an HTTP/2 client; fields a trailer must not carry are dropped. The echo shows the
    # trailers its request declared in a Trailer field (Go's rule), so every request declares them.
    from test_h2_websocket import h2c_client
    p, _ = bridged(env, h2c_bin)
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10 * SLOW)
    try:
        # the trailer section split over several reads
        for part in (b"POST /t HTTP/1.1\r\nHost: x\r\nTrailer: X-Sum, X-Two\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n5\r\nhello\r\n", b"6\r\n world\r\n0\r\nX-S",
                     b"um:  abc \r\nContent-Length: 99\r\nHost: evil\r\nX-Tw", b"o: 2\r\n\r\n"):
            s.sendall(part)
            time.sleep(0.05)
        raw = read_all(s)
    finally:
        s.close()
    assert status_of(raw) == 200, raw[:500]
    j = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert j["body_len"] == 11 and j["trailers"] == {"x-sum": ["abc"], "x-two": ["2"]}, j
    # without trailers nothing changes
    r = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "abc", f"http://127.0.0.1:{p.port}/nt")
    assert json.loads(r)["trailers"] == {} and json.loads(r)["body_len"] == 3
    # HTTP/2 clients: without and with a content-length, and trailers right after the head (no DATA)
    cl = h2c_client(p.port)
    base = [(":method", "POST"), (":scheme", "http"), (":path", "/up"), (":authority", cl.authority)]
    for extra, body in (([], b"hello"), ([("content-length", "5")], b"hello"), ([], b"")):
        sid = cl.request(base + extra + [("trailer", "x-sum, x-more")])
        if body:
            cl.c.send_data(sid, body)
        cl.c.send_headers(sid, [("x-sum", "abc"), ("host", "evil"), ("x-more", "m")], end_stream=True)
        cl.flush()
        cl.until(lambda: sid in cl.ended, "response")
        assert dict(cl.resp[sid])[":status"] == "200", cl.resp[sid]
        j = json.loads(bytes(cl.data[sid]))
        assert j["body_len"] == len(body) and j["trailers"] == {"x-sum": ["abc"], "x-more": ["m"]}, (extra, j)
    cl.s.close()


class BadFieldH2(LoopbackServer):
    """An h2c server that answers every request with one response field of the given value."""

    def __init__(self, value):
        self.value = value
        super().__init__(threaded=True)

    @staticmethod
    def frame(ftype, flags, sid, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload

    def serve(self, c):
        try:
            c.settimeout(5)
            buf = b""
            while len(buf) < 24:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[24:]
            c.sendall(self.frame(4, 0, 0))
            while True:
                while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                n, ftype, flags, sid = int.from_bytes(buf[:3], "big"), buf[3], buf[4], \
                    int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                buf = buf[9 + n:]
                if ftype == 4 and not flags & 1:
                    c.sendall(self.frame(4, 1, 0))
                elif ftype == 1:
                    # :status 200 (static index 8), then a literal field without indexing
                    block = b"\x88" + b"\x00" + bytes([5]) + b"x-bad" + bytes([len(self.value)]) + self.value
                    c.sendall(self.frame(1, 0x5, sid, block))
        except OSError:
            pass
        finally:
            c.close()


@pytest.mark.parametrize("value", [b"a\x01b", b"a\r\nx-injected: 1"])
def test_invalid_response_field_is_502(env, value):
    b = BadFieldH2(value)
    try:
        p = env.pylon(app_service("bad", [b.port]) + [httproute("r", [rule([match("/")], [ref("bad")])])])
        raw, _ = raw_exchange(p.port, b"GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        assert status_of(raw) == 502 and b"x-injected" not in raw.lower(), raw
        assert '"GET /f" 502' in p.log(), p.log()[-2000:]
    finally:
        b.stop()


def test_websocket_to_ws_app_protocol(env):
    a = env.echo("ws")
    p = env.pylon(app_service("ws", [a.port], app="kubernetes.io/ws") +
                  [httproute("r", [rule([match("/")], [ref("ws")])])])
    assert p.get("/plain").status == 200
    key = ws_key()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5 * SLOW)
    f = s.makefile("rb")
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    status = f.readline()
    fields = [line.strip().decode().lower() for line in iter(f.readline, b"\r\n")]
    assert status_of(status) == 101, (status, fields)
    assert f"sec-websocket-accept: {ws_accept(key)}".lower() in fields, fields
    # the tunnel carries bytes both ways
    for payload in (b"ping", os.urandom(100000)):
        s.sendall(payload)
        assert f.read(len(payload)) == payload
    f.close()
    s.close()
