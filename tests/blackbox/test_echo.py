"""`pylon echo` itself: the backend every other test trusts."""
import base64
import hashlib
import json
import socket
import time

from helpers import SANITIZER, Client, fetch, raw_exchange, status_of


def test_echo_describes_request(env):
    e = env.echo("pod-1")
    r = fetch(e.port, "/x/y?z=1&w", method="POST", body=b"hello",
              headers={"x-multi": ["a", "b"], "X-MULTI": "c", "content-type": "text/plain",
                       "x-lower-case-name": "v"}, host="example.test:81")
    assert r.status == 200 and r.header("X-Echo-Pod") == "pod-1"
    assert r.header("Content-Type") == "application/json"
    d = r.json()
    assert d["path"] == "/x/y?z=1&w"
    assert d["host"] == "example.test:81"
    assert d["method"] == "POST"
    assert d["proto"] == "HTTP/1.1"
    assert d["pod"] == "pod-1" and d["namespace"] == "default"
    assert d["body_bytes"] == 5
    h = d["headers"]
    assert h["X-Multi"] == ["a", "b", "c"], h         # merged, Go-canonical name
    assert h["X-Lower-Case-Name"] == ["v"]
    assert h["Content-Type"] == ["text/plain"]
    assert "Host" not in h                             # like Go's net/http


def test_echo_json_survives_hostile_header_bytes(env):
    e = env.echo("p")
    value = bytes(range(0x80, 0x100)) + b'"\\\t<>&\'' + "é€😀".encode() + b"\xed\xa0\x80\xc0\xaf"
    raw, _ = raw_exchange(e.port, b"GET /h HTTP/1.1\r\nHost: h\r\nX-Evil: " + value +
                          b"\r\nConnection: close\r\n\r\n", timeout=3)
    assert status_of(raw) == 200, raw[:200]
    body = raw.split(b"\r\n\r\n", 1)[1]
    body.decode("utf-8")                               # strictly valid UTF-8
    got = json.loads(body)["headers"]["X-Evil"][0]
    assert '"\\\t<>&\'' in got and "é€😀" in got
    assert "\ufffd" in got                              # invalid bytes replaced, not passed through


def test_echo_knobs(env):
    e = env.echo("p")
    assert fetch(e.port, "/?status=503").status == 503
    assert fetch(e.port, "/?status=204").body == b""
    assert fetch(e.port, "/?status=99").status == 200
    r = fetch(e.port, "/?size=100000")
    assert r.status == 200 and r.body == b"x" * 100000
    assert fetch(e.port, "/?size=0").body == b""
    t = time.monotonic()
    assert fetch(e.port, "/?delay_ms=300").status == 200
    assert time.monotonic() - t >= 0.29
    r = fetch(e.port, "/", headers={"X-Echo-Set-Header": "X-A: 1, X-B: two, Bad Name: x"})
    assert r.header("X-A") == "1" and r.header("X-B") == "two" and r.header("Bad Name") is None
    raw, closed = raw_exchange(e.port, b"GET /?close=1 HTTP/1.1\r\nHost: h\r\n\r\n", timeout=3)
    assert status_of(raw) == 200 and closed


def test_echo_keepalive_pipelining_and_stats(env):
    e = env.echo("p")
    c = Client(e.port)
    for i in range(5):
        assert c.get(f"/k{i}").json()["path"] == f"/k{i}"
    c.close()
    raw, _ = raw_exchange(e.port, b"GET /p1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: h\r\n"
                          b"Content-Length: 3\r\n\r\nabcGET /p3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                          timeout=3)
    assert raw.count(b"HTTP/1.1 200") == 3
    st = e.stats()
    assert st["requests"] == 8
    assert st["recent"][-3:] == ["/p1", "/p2", "/p3"]
    assert st["connections"] == 3                       # keep-alive client, pipelined, stats


def test_echo_body_streams_and_100_continue(env, tmp_path):
    import subprocess
    e = env.echo("p")
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(20 * 1024 * 1024)
    out = subprocess.run(["curl", "-s", "-T", str(big), f"http://127.0.0.1:{e.port}/up"],
                         capture_output=True, timeout=60)
    assert json.loads(out.stdout)["body_bytes"] == 20 * 1024 * 1024
    if not SANITIZER:  # shadow memory makes RSS meaningless under sanitizers
        assert e.rss_kb() < 20 * 1024, "echo must not keep the body"


def test_echo_rejects_garbage(env):
    e = env.echo("p")
    raw, closed = raw_exchange(e.port, b"NOT HTTP AT ALL\r\n\r\n", timeout=3)
    assert status_of(raw) == 400 and closed
    raw, closed = raw_exchange(e.port, b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
                               timeout=3)
    assert status_of(raw) == 431 and closed
    assert fetch(e.port, "/still-alive").status == 200


def test_echo_websocket(env):
    e = env.echo("p")
    key = base64.b64encode(b"0123456789abcdef").decode()
    s = socket.create_connection(("127.0.0.1", e.port), timeout=5)
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\nearly").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, rest = data.split(b"\r\n\r\n", 1)
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                            .digest()).decode()
    assert status_of(head) == 101
    assert f"Sec-WebSocket-Accept: {want}".encode() in head
    s.sendall(b"x" * 200000)
    got = rest
    while len(got) < 200005:
        d = s.recv(65536)
        assert d
        got += d
    assert got == b"early" + b"x" * 200000
    s.close()
