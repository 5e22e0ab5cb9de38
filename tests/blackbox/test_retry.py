"""HTTPRoute rule retry (HTTPRouteRetry): listed status codes and connection errors
are retried up to `attempts` times, `backoff` apart, bodies of at most 64 KiB replayed
byte for byte; over HTTP/1.1 and HTTP/2 clients, to HTTP/1.1 and h2c backends."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest

from helpers import (SLOW, LoopbackServer, backend, free_port, httproute, match, raw_exchange, recv_head,
                     ref, rule)
from test_h2c_bridge import app_service, h2c_bin, h2c_echo  # noqa: F401  (h2c_bin: a fixture)


class ScriptedBackend(LoopbackServer):
    """An HTTP/1.1 backend scripted by the query string, one response per connection:
    ?id=X&fail=N&code=C: the first N requests with id X get status C, later ones 200;
    &hang=N: the first N requests with id X wait 3 s before answering.
    Every request is recorded (id, method, path, body) with the port it came in on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {}           # id -> number of requests
        self.requests = []       # (id, method, body bytes)
        super().__init__(threaded=True)

    def count(self, rid):
        with self.lock:
            return self.seen.get(rid, 0)

    def bodies(self, rid):
        with self.lock:
            return [b for i, _, b in self.requests if i == rid]

    def serve(self, c):
        try:
            c.settimeout(10)
            data = recv_head(c)
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            body = self._body(c, hdrs, rest)
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            rid = q.get("id", ["-"])[0]
            with self.lock:
                n = self.seen.get(rid, 0) + 1
                self.seen[rid] = n
                self.requests.append((rid, method, body))
            if n <= int(q.get("hang", ["0"])[0]):
                time.sleep(3)
            status = int(q.get("code", ["503"])[0]) if n <= int(q.get("fail", ["0"])[0]) else 200
            out = json.dumps({"attempt": n, "port": self.port, "body_bytes": len(body),
                              "sha": hashlib.sha256(body).hexdigest()}).encode()
            c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (status, len(out), out))
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    @staticmethod
    def _body(c, hdrs, rest):
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(rest) < n:
                d = c.recv(65536)
                if not d:
                    break
                rest += d
            return rest[:n]
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in rest:
                    rest += c.recv(65536)
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    rest += c.recv(65536)
                if size == 0:
                    return body
                body += rest[:size]
                rest = rest[size + 2:]
        return b""


def retry(codes=None, attempts=None, backoff=None):
    r = {}
    if codes is not None:
        r["codes"] = codes
    if attempts is not None:
        r["attempts"] = attempts
    if backoff is not None:
        r["backoff"] = backoff
    return r


def retry_rule(path, svc, rt, timeouts=None, filters=None):
    r = rule([match(path)], [ref(svc)], filters=filters, timeouts=timeouts)
    r["retry"] = rt
    return r


@pytest.fixture
def scripted(env):
    b = ScriptedBackend()
    yield b
    b.stop()


def rid():
    return uuid.uuid4().hex[:12]


def timed(p, path, **kw):
    """(response, seconds it took)"""
    t = time.monotonic()
    r = p.get(path, **kw)
    return r, time.monotonic() - t


def retries_metric(p):
    total = 0
    for line in p.metrics().splitlines():
        m = re.match(r'^pylon_retries_total\{[^}]*\} (\d+)', line)
        if m:
            total += int(m.group(1))
    return total


def test_listed_codes_retried_until_success_and_attempts_limit(env, scripted):
    objs = backend("s", scripted.port) + [httproute("r", [
        retry_rule("/r3", "s", retry([500, 503], 3, "10ms")),
        retry_rule("/all", "s", retry([500, 502, 503, 504], 2, "1ms"))])]
    p = env.pylon(objs)
    # 2 failures, then success: 3 requests reach the backend, the client sees the 200
    i = rid()
    r = p.get(f"/r3?id={i}&fail=2&code=503")
    assert r.status == 200 and r.json()["attempt"] == 3, r
    assert scripted.count(i) == 3
    # more failures than attempts: 1 + 3 requests, the last attempt's response goes to the client
    i = rid()
    r = p.get(f"/r3?id={i}&fail=9&code=500")
    assert r.status == 500 and r.json()["attempt"] == 4, r
    assert scripted.count(i) == 4
    # a status not in codes is answered as it is
    i = rid()
    r = p.get(f"/r3?id={i}&fail=1&code=502")
    assert r.status == 502 and scripted.count(i) == 1, r
    # the conformance test's shape: codes 500/502/503/504, attempts 2
    for code in (500, 502, 503, 504):
        i = rid()
        assert p.get(f"/all?id={i}&fail=1&code={code}").status == 200
        assert scripted.count(i) == 2
        i = rid()
        assert p.get(f"/all?id={i}&fail=3&code={code}").status == code
        assert scripted.count(i) == 3
    assert retries_metric(p) == 2 + 3 + 4 * (1 + 2)


def test_no_retry_without_stanza_and_config_dump(env, scripted):
    objs = backend("s", scripted.port) + [httproute("r", [
        rule([match("/plain")], [ref("s")]),
        retry_rule("/conn", "s", retry(attempts=2))])]
    p = env.pylon(objs)
    i = rid()
    assert p.get(f"/plain?id={i}&fail=1&code=503").status == 503
    assert scripted.count(i) == 1
    # a stanza without codes retries connection errors only
    i = rid()
    assert p.get(f"/conn?id={i}&fail=1&code=503").status == 503
    assert scripted.count(i) == 1
    cfg = p.admin("/config").json()
    rts = [r.get("retry") for r in cfg["rules"]]
    assert {"codes": [], "attempts": 2, "backoffMs": 25} in rts, rts


def test_backoff_between_attempts(env, scripted):
    objs = backend("s", scripted.port) + [httproute("r", [
        retry_rule("/", "s", retry([503], 2, "200ms"))])]
    p = env.pylon(objs)
    i = rid()
    r, took = timed(p, f"/b?id={i}&fail=2")
    assert r.status == 200 and scripted.count(i) == 3, r
    # 200 ms, then 400 ms (doubling): never sooner than the configured minimum
    assert 0.55 <= took < 5 * SLOW, took


def test_post_bodies_replayed_and_large_body_not_retried(env, scripted):
    objs = backend("s", scripted.port) + [httproute("r", [
        retry_rule("/", "s", retry([503], 2, "1ms"))])]
    p = env.pylon(objs)
    body = os.urandom(40000)
    i = rid()
    r = p.get(f"/p?id={i}&fail=2", method="POST", body=body)
    assert r.status == 200 and r.json()["sha"] == hashlib.sha256(body).hexdigest(), r
    assert scripted.bodies(i) == [body] * 3
    # chunked upload: the re-chunked body is kept and sent again whole
    i = rid()
    chunks = [b"first-", os.urandom(3000), b"-last"]
    req = (f"PUT /c?id={i}&fail=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           f"Connection: close\r\n\r\n").encode()
    for ch in chunks:
        req += b"%x\r\n%s\r\n" % (len(ch), ch)
    req += b"0\r\n\r\n"
    got, _ = raw_exchange(p.port, req, timeout=10)
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    assert scripted.bodies(i) == [b"".join(chunks)] * 2
    # over 64 KiB: not kept, so not retried
    big = os.urandom(200000)
    i = rid()
    r = p.get(f"/p?id={i}&fail=1", method="POST", body=big)
    assert r.status == 503 and scripted.count(i) == 1, r
    assert scripted.bodies(i) == [big]
    # a chunked body that outgrows the bound midway: the request goes through, unretried
    i = rid()
    head = (f"POST /c?id={i}&fail=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n").encode()
    chunk = b"%x\r\n%s\r\n" % (20000, b"z" * 20000)
    got, _ = raw_exchange(p.port, None, timeout=10, chunks=[head] + [chunk] * 10 + [b"0\r\n\r\n"])
    assert got.startswith(b"HTTP/1.1 503"), got[:200]
    assert scripted.count(i) == 1 and len(scripted.bodies(i)[0]) == 200000


def test_connection_refused_retried_to_another_endpoint(env, scripted):
    dead1, dead2 = free_port(), free_port()
    objs = backend("s", dead1, dead2, scripted.port) + [httproute("r", [
        retry_rule("/", "s", retry(attempts=2, backoff="1ms"))])]
    p = env.pylon(objs)
    # whichever endpoint a request starts on, two more tries reach the live one
    for _ in range(9):
        i = rid()
        r = p.get(f"/x?id={i}")
        assert r.status == 200 and scripted.count(i) == 1, r
    assert retries_metric(p) >= 6


def test_mirror_not_repeated(env, scripted):
    mirror = env.echo("mirror")
    mf = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}
    objs = backend("s", scripted.port) + backend("mirror", mirror.port) + [httproute("r", [
        retry_rule("/", "s", retry([503], 3, "1ms"), filters=[mf])])]
    p = env.pylon(objs)
    before = mirror.stats()["requests"]
    i = rid()
    assert p.get(f"/m?id={i}&fail=2").status == 200 and scripted.count(i) == 3
    time.sleep(0.3 * SLOW)
    assert mirror.stats()["requests"] == before + 1


def test_timeouts_request_bounds_retries_backend_request_per_attempt(env, scripted):
    objs = backend("s", scripted.port) + [httproute("r", [
        retry_rule("/total", "s", retry([503], 5, "400ms"), timeouts={"request": "1s"}),
        retry_rule("/per", "s", retry([503], 2, "10ms"), timeouts={"request": "5s", "backendRequest": "300ms"})])]
    p = env.pylon(objs)
    # 503 at once, a retry 400 ms later, the next would start past the 1 s request timeout: 503
    i = rid()
    r, took = timed(p, f"/total?id={i}&fail=9")
    assert r.status == 503 and scripted.count(i) == 2, r
    assert 0.35 <= took < 1.5 * SLOW, took
    # the first attempt hangs past backendRequest: abandoned, and the retry answers
    i = rid()
    r, took = timed(p, f"/per?id={i}&hang=1")
    assert r.status == 200 and r.json()["attempt"] == 2, r
    assert took < 2.5 * SLOW, took
    # every attempt hangs: each is cut at 300 ms, then 504
    i = rid()
    r, took = timed(p, f"/per?id={i}&hang=9")
    assert r.status == 504 and 0.85 <= took < 2.5 * SLOW, (r, took)
    assert scripted.count(i) == 3


def need(tool):
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed")


def curl_h2(*args):
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", *args],
                       capture_output=True, timeout=30 * SLOW)
    body, _, tail = r.stdout.decode().rpartition("\n")
    return tail, body, r.stderr


def test_http2_clients_retried(env, scripted, tmp_path):
    need("curl")
    objs = backend("s", scripted.port) + [httproute("r", [
        retry_rule("/", "s", retry([500, 503], 3, "1ms"))])]
    p = env.pylon(objs)
    i = rid()
    tail, body, err = curl_h2(f"http://127.0.0.1:{p.port}/g?id={i}&fail=2")
    assert tail == "2 200" and json.loads(body)["attempt"] == 3, (tail, body, err)
    assert scripted.count(i) == 3
    i = rid()
    tail, body, err = curl_h2(f"http://127.0.0.1:{p.port}/g?id={i}&fail=9&code=500")
    assert tail == "2 500" and scripted.count(i) == 4, (tail, body, err)
    # a POST body (content-length, and without one: chunked to the backend) replayed byte-exact
    blob = tmp_path / "b.bin"
    data = os.urandom(30000)
    blob.write_bytes(data)
    for extra in ([], ["-H", "content-length:"]):
        i = rid()
        tail, body, err = curl_h2("--data-binary", f"@{blob}", *extra,
                                  f"http://127.0.0.1:{p.port}/p?id={i}&fail=1")
        assert tail == "2 200", (tail, body, err)
        assert scripted.bodies(i) == [data, data]
    # over 64 KiB: no retry
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300000))
    i = rid()
    tail, body, err = curl_h2("--data-binary", f"@{big}", f"http://127.0.0.1:{p.port}/p?id={i}&fail=1")
    assert tail == "2 503" and scripted.count(i) == 1, (tail, err)


def test_http2_connection_refused_retried(env, scripted):
    need("curl")
    objs = backend("s", free_port(), free_port(), scripted.port) + [httproute("r", [
        retry_rule("/", "s", retry(attempts=2, backoff="1ms"))])]
    p = env.pylon(objs)
    for _ in range(6):
        i = rid()
        tail, body, err = curl_h2(f"http://127.0.0.1:{p.port}/x?id={i}")
        assert tail == "2 200" and scripted.count(i) == 1, (tail, body, err)


# ---------------------------------------------------------------- h2c backends


def test_h2c_backend_retried(env, h2c_bin, tmp_path):
    """Backends on an appProtocol kubernetes.io/h2c port: the stream is opened again, with the
    kept head and body; from HTTP/1.1 and HTTP/2 clients."""
    e = h2c_echo(env, h2c_bin)
    objs = app_service("h", [free_port(), free_port(), e.port]) + [httproute("r", [
        retry_rule("/", "h", retry([503], 2, "1ms"))])]
    p = env.pylon(objs)
    body = os.urandom(30000)
    sha = hashlib.sha256(body).hexdigest()
    # every attempt answers 503: the client gets the last one, which had the whole body
    before = retries_metric(p)
    r = p.get("/status?code=503", method="POST", body=body)
    assert r.status == 503 and r.json()["body_len"] == 30000 and r.json()["body_sha256"] == sha, r
    assert retries_metric(p) - before >= 2
    # two of three endpoints refuse connections: two more tries always reach the live one
    for _ in range(6):
        r = p.get("/x", method="POST", body=body)
        assert r.status == 200 and r.json()["body_sha256"] == sha, r
    need("curl")
    blob = tmp_path / "b.bin"
    blob.write_bytes(body)
    for _ in range(6):
        tail, out, err = curl_h2("--data-binary", f"@{blob}", f"http://127.0.0.1:{p.port}/x")
        assert tail == "2 200" and json.loads(out)["body_sha256"] == sha, (tail, out, err)
    before = retries_metric(p)
    tail, out, err = curl_h2(f"http://127.0.0.1:{p.port}/status?code=503")
    assert tail == "2 503", (tail, out, err)
    assert retries_metric(p) - before >= 2


def test_h2c_backend_request_timeout_per_attempt(env, h2c_bin):
    e = h2c_echo(env, h2c_bin)
    objs = app_service("h", [e.port]) + [httproute("r", [
        retry_rule("/", "h", retry([503], 1, "1ms"), timeouts={"backendRequest": "300ms"})])]
    p = env.pylon(objs)
    r, took = timed(p, "/sleep?ms=3000")
    assert r.status == 504 and 0.55 <= took < 2.5 * SLOW, (r, took)
    assert retries_metric(p) == 1
