"""HTTP/2 downstream: h2c with prior knowledge on the HTTP port (curl, nghttp,
h2load), h2 over TLS by ALPN, bodies streamed both ways, trailers from an
HTTP/1.1 backend, h2spec against both listener kinds, and the hardening
limits (rapid reset, CONTINUATION flood, GOAWAY on drain)."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from helpers import REPO, SLOW, backend, fetch, free_port, httproute, match, recv_head, ref, rule, wait_until
from tlsutil import CA, https_listener, tls_secret

H2SPEC_SCRIPT = REPO / "scripts" / "h2spec.sh"


def need(tool):
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed (package nghttp2-client / curl)")


def run(args, timeout=60, **kw):
    return subprocess.run(args, capture_output=True, timeout=timeout * SLOW, **kw)


@pytest.fixture
def h2c(env):
    e = env.echo("h2-pod")
    p = env.pylon(backend("echo", e.port) + [httproute("r", [rule([match("/")], [ref("echo")])])])
    return p, e


# ---------------------------------------------------------------- h2c


def test_curl_prior_knowledge_get_and_http1_on_same_port(h2c):
    p, _ = h2c
    need("curl")
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
             f"http://127.0.0.1:{p.port}/a/b?q=1", "-H", "x-test: yes", "-H", "cookie: a=1",
             "-H", "cookie: b=2"])
    body, _, tail = r.stdout.decode().rpartition("\n")
    assert tail == "2 200", (r.stdout, r.stderr)
    d = json.loads(body)
    assert d["path"] == "/a/b?q=1" and d["proto"] == "HTTP/1.1" and d["host"] == f"127.0.0.1:{p.port}"
    assert d["headers"]["X-Test"] == ["yes"]
    assert d["headers"]["Cookie"] == ["a=1; b=2"]          # crumbs joined for HTTP/1.1
    assert d["headers"]["X-Forwarded-Proto"] == ["http"]
    # the same port still speaks HTTP/1.1
    assert p.get("/h1").status == 200


def test_bodies_stream_both_ways(h2c, tmp_path):
    p, _ = h2c
    need("curl")
    blob = tmp_path / "up.bin"
    data = os.urandom(3 * 1024 * 1024)
    blob.write_bytes(data)
    # Content-Length upload
    r = run(["curl", "-sS", "--http2-prior-knowledge", "--data-binary", f"@{blob}",
             f"http://127.0.0.1:{p.port}/up"])
    d = json.loads(r.stdout)
    assert d["body_bytes"] == len(data) and d["method"] == "POST", r.stderr
    # no length: chunked toward the backend
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-T", str(blob), "-H", "content-length:",
             f"http://127.0.0.1:{p.port}/chunked"])
    d = json.loads(r.stdout)
    assert d["body_bytes"] == len(data) and d["method"] == "PUT", r.stderr
    assert d["headers"].get("Transfer-Encoding") in (None, ["chunked"])
    # a large download
    out = tmp_path / "down.bin"
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-o", str(out), "-w", "%{http_code}",
             f"http://127.0.0.1:{p.port}/?size=20000000"])
    assert r.stdout == b"200" and out.stat().st_size == 20000000, r.stderr


def test_nghttp_concurrent_streams(h2c):
    p, _ = h2c
    need("nghttp")
    urls = [f"http://127.0.0.1:{p.port}/s{i}?size={1000 * i}" for i in range(1, 21)]
    r = run(["nghttp", "-nv"] + urls)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out[-3000:]
    assert len(re.findall(r"recv \(stream_id=\d+\) :status: 200", out)) == 20, out[-3000:]
    # our SETTINGS: 100 concurrent streams, 64 KiB stream window
    i = out.index("recv SETTINGS frame")
    settings = out[i:out.index("recv SETTINGS frame", i + 1)]
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in settings, settings
    assert "SETTINGS_INITIAL_WINDOW_SIZE(0x04):65536" in settings, settings


def test_h2load_many_streams(h2c):
    p, _ = h2c
    need("h2load")
    r = run(["h2load", "-n", "3000", "-c", "4", "-m", "20", f"http://127.0.0.1:{p.port}/"])
    out = r.stdout.decode()
    assert re.search(r"requests: 3000 total, 3000 started, 3000 done, 3000 succeeded", out), out


def test_errors_are_h2_responses(env):
    need("curl")
    p = env.pylon([httproute("r", [rule([match("/x")], [ref("missing")])])])
    for path, want in [("/nothing", "404"), ("/x", "500")]:
        r = run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                 f"http://127.0.0.1:{p.port}{path}"])
        assert r.stdout.decode() == f"2 {want}", r


class TrailerBackend:
    """HTTP/1.1 backend answering every request with a chunked body and trailers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            data = recv_head(c)
            if b"\r\n\r\n" not in data:
                return
            self.heads.append(data)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                      b"Trailer: X-Checksum\r\nConnection: close\r\n\r\n"
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\nGrpc-Status: 0\r\n"
                      b"Content-Length: 99\r\n\r\n")

    def stop(self):
        self.sock.close()


def test_trailers_from_http1_backend(env):
    need("nghttp")
    b = TrailerBackend()
    try:
        p = env.pylon(backend("t", b.port) + [httproute("r", [rule([match("/")], [ref("t")])])])
        r = run(["nghttp", "-v", f"http://127.0.0.1:{p.port}/tr", "-H", "te: trailers"])
        out = r.stdout.decode(errors="replace")
        assert "hello world" in out, out
        # trailers arrive after the DATA, in a HEADERS frame that ends the stream
        i_data = out.index("recv DATA frame")
        assert re.search(r"recv \(stream_id=13\) x-checksum: abc123", out[i_data:]), out
        assert re.search(r"recv \(stream_id=13\) grpc-status: 0", out[i_data:]), out
        assert "content-length: 99" not in out[i_data:]         # framing fields never become trailers
        assert re.search(r"recv HEADERS frame <length=\d+, flags=0x05, stream_id=13>", out[i_data:]), out
        # the client's "te: trailers" reached the backend
        assert b"TE: trailers" in b.heads[-1], b.heads[-1]
    finally:
        b.stop()


# ---------------------------------------------------------------- TLS (ALPN)


def _https(env, tmp_path):
    ca = CA(tmp_path / "pki")
    e = env.echo("tls-h2")
    port = free_port()
    crt = ca.issue("h2.example.com")
    objs = [tls_secret("c", *crt)] + backend("echo", e.port) + [httproute("r", [rule([match("/")], [ref("echo")])])]
    p = env.pylon(objs, listeners=[https_listener("h", port, ["c"])])
    return p, port, ca


def test_h2_over_tls_alpn(env, tmp_path):
    need("curl")
    p, port, ca = _https(env, tmp_path)
    base = ["curl", "-sS", "--cacert", str(ca.crt), "--resolve", f"h2.example.com:{port}:127.0.0.1"]
    r = run(base + ["--http2", "-w", "\n%{http_version} %{http_code}", f"https://h2.example.com:{port}/t"])
    body, _, tail = r.stdout.decode().rpartition("\n")
    assert tail == "2 200", (r.stdout, r.stderr)
    assert json.loads(body)["headers"]["X-Forwarded-Proto"] == ["https"]
    r = run(base + ["--http1.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                    f"https://h2.example.com:{port}/t"])
    assert r.stdout.decode() == "1.1 200", r


# ---------------------------------------------------------------- h2spec


def _h2spec():
    r = subprocess.run(["bash", str(H2SPEC_SCRIPT)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip("h2spec could not be built: " + r.stderr.strip()[-500:])
    return r.stdout.strip()


def _run_h2spec(binary, port, tls=False):
    args = [binary, "-h", "127.0.0.1", "-p", str(port), "-o", str(int(3 * SLOW))]
    if tls:
        args += ["-t", "-k"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    m = re.search(r"(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed", r.stdout)
    assert m, r.stdout[-3000:] + r.stderr[-2000:]
    total, passed, skipped, failed = map(int, m.groups())
    assert failed == 0 and passed == total, r.stdout[r.stdout.find("Failures:"):][:6000]
    assert total >= 145


def test_h2spec_h2c(h2c):
    binary = _h2spec()
    p, _ = h2c
    _run_h2spec(binary, p.port)


def test_h2spec_tls(env, tmp_path):
    binary = _h2spec()
    p, port, _ = _https(env, tmp_path)
    _run_h2spec(binary, port, tls=True)


# ---------------------------------------------------------------- hardening

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def get_block(authority=b"x"):
    # :method GET, :scheme http, :path /, :authority literal without indexing (index 1)
    return b"\x82\x86\x84" + b"\x01" + bytes([len(authority)]) + authority


def read_frames(s, timeout):
    """Reads until the server closes (or timeout); returns [(type, flags, sid, payload)], closed."""
    buf, closed = b"", False
    s.settimeout(0.5)
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            closed = True
            break
        if not d:
            closed = True
            break
        buf += d
    frames = []
    while len(buf) >= 9:
        n = int.from_bytes(buf[:3], "big")
        if len(buf) < 9 + n:
            break
        frames.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n]))
        buf = buf[9 + n:]
    return frames, closed


def goaway_code(frames):
    for t, _, _, pl in frames:
        if t == 7:
            return int.from_bytes(pl[4:8], "big")
    return None


def test_rapid_reset_gets_goaway(h2c):
    p, e = h2c
    before = e.stats()["requests"]
    s = socket.create_connection(("127.0.0.1", p.port))
    try:
        out = [PREFACE, frame(4, 0, 0)]
        for i in range(3000):
            sid = 1 + 2 * i
            out.append(frame(1, 0x4, sid, get_block()))          # HEADERS, END_HEADERS, no END_STREAM
            out.append(frame(3, 0, sid, struct.pack(">I", 8)))   # RST_STREAM CANCEL
        try:
            s.sendall(b"".join(out))
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames, closed = read_frames(s, 5)
        assert goaway_code(frames) is not None, frames[-5:]      # nghttp2's reset rate limit
        assert closed
    finally:
        s.close()
    # streams reset in the read that opened them never reached the backend
    assert e.stats()["requests"] - before < 100
    assert fetch(p.port, "/after").status == 200


def test_continuation_flood_closed(h2c):
    p, _ = h2c
    s = socket.create_connection(("127.0.0.1", p.port))
    try:
        out = [PREFACE, frame(4, 0, 0), frame(1, 0, 1, get_block())]   # HEADERS without END_HEADERS
        for _ in range(200):
            out.append(frame(9, 0, 1, b"\x40\x01a\x01b"))             # CONTINUATION, never ending
        try:
            s.sendall(b"".join(out))
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames, closed = read_frames(s, 5)
        assert closed, frames[-5:]
        assert goaway_code(frames) is not None, frames[-5:]
    finally:
        s.close()


def test_goaway_on_drain(env):
    """SIGTERM: an idle HTTP/2 connection gets GOAWAY(NO_ERROR) and is closed; pylon exits 0."""
    e = env.echo("d")
    p = env.pylon(backend("echo", e.port) + [httproute("r", [rule([match("/")], [ref("echo")])])])
    s = socket.create_connection(("127.0.0.1", p.port))
    try:
        s.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x5, 1, get_block()))
        time.sleep(0.3 * SLOW)
        p.p.send_signal(signal.SIGTERM)
        frames, closed = read_frames(s, 5)
        assert any(t == 1 and sid == 1 for t, _, sid, _ in frames), frames   # the response came
        assert goaway_code(frames) == 0, frames
        assert closed
    finally:
        s.close()
    assert p.p.wait(10 * SLOW) == 0
