"""Connections: keep-alive, large bodies with bounded memory, WebSocket
tunnelling, timeouts, the connection limit."""
import base64
import hashlib
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from helpers import (SANITIZER, SLOW, Client, backend, httproute, match, raw_exchange, ref, rule,
                     status_of)

MB = 1024 * 1024


def simple(env, workers=2, args=(), timeouts=None):
    a = env.echo("a")
    objs = backend("a", a.port) + [httproute("r", [rule([match("/")], [ref("a")], timeouts=timeouts)])]
    return env.pylon(objs, workers=workers, args=args), a


def test_client_keepalive_curl_reuses_connection(env):
    p, _ = simple(env)
    url = f"http://127.0.0.1:{p.port}"
    out = subprocess.run(["curl", "-sv", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                          f"{url}/a", f"{url}/b", f"{url}/c"],
                         capture_output=True, text=True, timeout=20 * SLOW)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("Re-using existing connection") == 2, out.stderr


def test_keepalive_many_requests_one_connection_and_backend_reuse(env):
    p, a = simple(env, workers=1)
    conns_before = a.stats()["connections"]
    c = Client(p.port)
    for i in range(50):
        r = c.get(f"/k{i}")
        assert r.status == 200 and r.json()["path"] == f"/k{i}", r
    c.close()
    # +1 for the stats request itself; pooled upstream connections: a few at most, not 50
    new = a.stats()["connections"] - conns_before - 1
    assert 1 <= new <= 2, f"backend saw {new} new connections for 50 keep-alive requests"


def test_http10_and_connection_close(env):
    p, _ = simple(env)
    raw, closed = raw_exchange(p.port, b"GET /ten HTTP/1.0\r\nHost: x\r\n\r\n", timeout=3)
    assert status_of(raw) == 200 and closed, raw[:300]
    raw, closed = raw_exchange(p.port, b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=3)
    assert status_of(raw) == 200 and closed, raw[:300]


def test_pipelined_requests_answered_in_order(env):
    p, _ = simple(env)
    reqs = b"".join(b"GET /pipe%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    raw, _ = raw_exchange(p.port, reqs + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                          timeout=5)
    paths = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"\n", 1)[0])["path"]
             for part in raw.split(b"HTTP/1.1 200")[1:]]
    assert paths == [f"/pipe{i}" for i in range(5)] + ["/last"], raw[:2000]


class RssSampler:
    def __init__(self, proc):
        self.proc = proc
        self.max = proc.rss_kb()
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                self.max = max(self.max, self.proc.rss_kb())
            except OSError:
                return
            time.sleep(0.01)

    def done(self):
        self.stop = True
        self.t.join()
        return self.max


@pytest.mark.skipif(bool(SANITIZER), reason="RSS is meaningless under sanitizers")
def test_large_upload_and_download_bounded_memory(env, tmp_path):
    p, _ = simple(env, workers=1)
    for _ in range(5):
        assert p.get("/warm").status == 200
    base = p.rss_kb()
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(100 * MB)
    url = f"http://127.0.0.1:{p.port}"
    s = RssSampler(p)
    try:
        # upload with Content-Length, then chunked
        for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
            out = subprocess.run(["curl", "-s", "-T", str(big), *extra, f"{url}/up"],
                                 capture_output=True, timeout=120 * SLOW)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["body_bytes"] == 100 * MB, out.stdout[:500]
        # download at full speed
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                              f"{url}/dl?size={100 * MB}"], capture_output=True, text=True,
                             timeout=120 * SLOW)
        assert out.stdout == f"200 {100 * MB}", out
        # download by a client that does not read for a while: pylon must not buffer it all
        sock = socket.create_connection(("127.0.0.1", p.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /dl?size=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (100 * MB))
        time.sleep(1.5)
        mid = p.rss_kb()
        got = 0
        head = b""
        while True:
            d = sock.recv(1 << 20)
            if not d:
                break
            if not head:
                head = d[:200]
            got += len(d)
        sock.close()
        assert status_of(head) == 200, head
        assert got > 100 * MB and got < 100 * MB + 4096, got
    finally:
        peak = s.done()
    growth_mb = (peak - base) / 1024
    assert growth_mb < 64, f"RSS grew {growth_mb:.1f} MB (base {base} kB, peak {peak} kB, stalled {mid} kB)"


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                            .digest()).decode()


def test_websocket_upgrade_tunnels_bytes(env):
    p, _ = simple(env)
    key = ws_key()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5 * SLOW)
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(4096)
        assert d, f"closed during handshake: {data!r}"
        data += d
    head, rest = data.split(b"\r\n\r\n", 1)
    assert status_of(head) == 101, head
    lines = [l.lower() for l in head.decode().split("\r\n")]
    assert f"sec-websocket-accept: {ws_accept(key)}".lower() in lines, head
    assert "upgrade: websocket" in lines, head
    # both directions, several rounds, one large
    for payload in (b"hello", bytes(range(256)) * 4, os.urandom(300000)):
        s.sendall(payload)
        got = rest
        rest = b""
        while len(got) < len(payload):
            d = s.recv(65536)
            assert d, "tunnel closed early"
            got += d
        assert got == payload
    s.close()


def test_header_timeout_slowloris(env):
    p, _ = simple(env, args=["--header-timeout", "1000"])
    # half a head, then silence
    t = time.monotonic()
    raw, closed = raw_exchange(p.port, b"GET / HTTP/1.1\r\nHost: x\r\n", timeout=5)
    took = time.monotonic() - t
    assert closed, "connection with a half head was never closed"
    assert 0.7 < took < 3.0 * SLOW, f"closed after {took:.2f}s, want ~1s"
    assert status_of(raw) in (None, 408), raw
    # a byte every 200 ms: the deadline covers the whole head, not the gap between reads
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    t = time.monotonic()
    closed_at = None
    for b in b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 30:
        try:
            s.sendall(bytes([b]))
        except OSError:
            closed_at = time.monotonic() - t
            break
        try:
            r = s.recv(4096) if _readable(s) else None
        except OSError:
            r = b""
        if r is not None and (r == b"" or status_of(r) in (408, 400)):
            closed_at = time.monotonic() - t
            break
        time.sleep(0.2)
    s.close()
    assert closed_at is not None, "slowloris connection survived 10 s with a 1 s header timeout"
    assert closed_at < 3.0 * SLOW, closed_at


def _readable(s):
    import select
    r, _, _ = select.select([s], [], [], 0)
    return bool(r)


def test_backend_request_timeout_504(env):
    p, _ = simple(env, timeouts={"backendRequest": "500ms"})
    t = time.monotonic()
    r = p.get("/slow?delay_ms=3000")
    took = time.monotonic() - t
    assert r.status == 504, r
    assert took < 2.0 * SLOW, took
    r = p.get("/fast?delay_ms=100")
    assert r.status == 200, r


def test_request_timeout_default_flag(env):
    p, _ = simple(env, args=["--backend-timeout", "400"])
    r = p.get("/slow?delay_ms=3000")
    assert r.status == 504, r


def test_max_conns(env):
    p, _ = simple(env, workers=1, args=["--max-conns", "4"])
    held = []
    for i in range(4):
        c = Client(p.port)
        assert c.get(f"/held{i}").status == 200
        held.append(c)
    # the fifth is closed at once (maybe after a 503), never served
    raw, closed = raw_exchange(p.port, b"GET /fifth HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert closed, raw
    assert status_of(raw) in (None, 503), raw
    # the held ones still work
    for c in held:
        assert c.get("/still").status == 200
    held.pop().close()
    time.sleep(0.2)
    deadline = time.monotonic() + 3 * SLOW
    ok = False
    while time.monotonic() < deadline and not ok:
        raw, _ = raw_exchange(p.port, b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                              timeout=2)
        ok = status_of(raw) == 200
    assert ok, "a freed connection slot was not reusable"
    for c in held:
        c.close()


def test_sigterm_exits_cleanly(env):
    p, _ = simple(env)
    assert p.get("/").status == 200
    rc = p.stop()
    assert rc == 0, f"pylon exit code on SIGTERM: {rc}"
