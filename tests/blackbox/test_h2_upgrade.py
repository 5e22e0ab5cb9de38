"""h2c by "Upgrade: h2c" from HTTP/1.1 (RFC 7540 3.2, issue 6) on an HTTP
listener: curl --http2 on http:// URLs, a real HTTP/2 client (the `h2` package)
that upgrades and then opens more streams on the same connection, and the
cases where the upgrade is ignored and the request answered as HTTP/1.1 (a
body, TLS, a missing or invalid HTTP2-Settings). Upgrade: h2c and
HTTP2-Settings never reach a backend."""
import base64
import json
import socket
import struct
import subprocess

import pytest

from helpers import SLOW, backend, free_port, httproute, match, raw_exchange, recv_head, ref, rule, status_of
from tlsutil import CA, https_listener, tls_secret

h2conn = pytest.importorskip("h2.connection", reason="python h2 package missing (scripts/deps.sh installs it)")
h2config = pytest.importorskip("h2.config")
h2events = pytest.importorskip("h2.events")

# what curl 7.88 sends: MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 32 MiB, ENABLE_PUSH 0
CURL_SETTINGS = b"AAMAAABkAAQCAAAAAAIAAAAA"


def upgrade_fields(settings=CURL_SETTINGS, connection=b"Upgrade, HTTP2-Settings"):
    return b"Connection: " + connection + b"\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n"


def curl(*args):
    r = subprocess.run(["curl", "-sS", "-v", "-w", "\n%{http_version} %{http_code}", *args], capture_output=True,
                       timeout=30 * SLOW)
    assert r.returncode == 0, r.stderr
    body, _, tail = r.stdout.decode().rpartition("\n")
    return tail, body, r.stderr.decode(errors="replace")


@pytest.fixture
def up(env):
    e = env.echo("up-pod")
    p = env.pylon(backend("echo", e.port) + [httproute("r", [rule([match("/")], [ref("echo")])])])
    return p, e


def no_hop_fields(headers):
    names = {k.lower() for k in headers}
    return not names & {"upgrade", "http2-settings", "connection"}


def test_curl_http2_upgrades(up):
    p, _ = up
    tail, body, err = curl("--http2", "-H", "x-test: yes", f"http://127.0.0.1:{p.port}/u/x?q=1")
    assert tail == "2 200", (tail, err)
    assert "< HTTP/1.1 101 Switching Protocols" in err and "< HTTP/2 200" in err, err
    d = json.loads(body)
    assert d["path"] == "/u/x?q=1" and d["method"] == "GET" and d["host"] == f"127.0.0.1:{p.port}", d
    assert d["headers"]["X-Test"] == ["yes"] and d["headers"]["X-Forwarded-Proto"] == ["http"], d
    assert no_hop_fields(d["headers"]), d["headers"]
    # HEAD: stream 1 ends with the response head
    tail, body, err = curl("--http2", "-I", f"http://127.0.0.1:{p.port}/head")
    assert tail == "2 200" and "< HTTP/2 200" in err, (tail, err)


def test_request_with_body_stays_http1(up, tmp_path):
    p, _ = up
    # curl sends Upgrade: h2c with a POST body too: the upgrade is ignored
    tail, body, err = curl("--http2", "-d", "hello", f"http://127.0.0.1:{p.port}/post")
    assert tail == "1.1 200" and "101" not in err, (tail, err)
    d = json.loads(body)
    assert d["method"] == "POST" and d["body_bytes"] == 5 and no_hop_fields(d["headers"]), d
    blob = tmp_path / "b"
    blob.write_bytes(b"x" * 100000)
    tail, body, err = curl("--http2", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{blob}",
                           f"http://127.0.0.1:{p.port}/chunked")
    assert tail == "1.1 200", (tail, err)
    assert json.loads(body)["body_bytes"] == 100000


def settings_b64(*entries):
    raw = b"".join(struct.pack(">HI", k, v) for k, v in entries)
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


@pytest.mark.parametrize("fields", [
    upgrade_fields(connection=b"Upgrade"),                               # HTTP2-Settings not a connection option
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n",          # no HTTP2-Settings
    upgrade_fields() + b"HTTP2-Settings: " + CURL_SETTINGS + b"\r\n",    # two of them
    upgrade_fields(settings=b"AAMAAABk!AQCAAAAAAIAAAAA"),                # not base64url
    upgrade_fields(settings=b"AAMAAABkAA"),                              # not whole SETTINGS entries
    upgrade_fields(settings=settings_b64((2, 2))),                       # ENABLE_PUSH 2: invalid value
    upgrade_fields(settings=settings_b64((4, 1 << 31))),                 # window above 2^31-1
    upgrade_fields(settings=settings_b64(*[(3, 100)] * 33)),             # more entries than we take
], ids=["not-in-connection", "missing", "twice", "bad-base64", "partial-entry", "bad-push", "bad-window",
        "too-many"])
def test_upgrade_ignored(up, fields):
    p, _ = up
    raw, _ = raw_exchange(p.port, b"GET /plain HTTP/1.1\r\nHost: x\r\n" + fields + b"Connection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    d = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert d["path"] == "/plain" and no_hop_fields(d["headers"]), d


def test_http10_upgrade_ignored(up):
    p, _ = up
    raw, _ = raw_exchange(p.port, b"GET /old HTTP/1.0\r\nHost: x\r\n" + upgrade_fields() + b"\r\n")
    assert status_of(raw) == 200 and b" 101 " not in raw.split(b"\r\n")[0], raw[:300]


def test_upgrade_over_tls_ignored(env, tmp_path):
    ca = CA(tmp_path / "pki")
    e = env.echo("tls-up")
    port = free_port()
    objs = [tls_secret("c", *ca.issue("up.example.com"))] + backend("echo", e.port) + [
        httproute("r", [rule([match("/")], [ref("echo")])])]
    env.pylon(objs, listeners=[https_listener("h", port, ["c"])])
    tail, body, err = curl("--http1.1", "--cacert", str(ca.crt), "--resolve", f"up.example.com:{port}:127.0.0.1",
                           "-H", "Connection: Upgrade, HTTP2-Settings", "-H", "Upgrade: h2c",
                           "-H", "HTTP2-Settings: " + CURL_SETTINGS.decode(), f"https://up.example.com:{port}/tls")
    assert tail == "1.1 200" and "101" not in err, (tail, err)
    assert no_hop_fields(json.loads(body)["headers"])


# ---------------------------------------------------------------- a real HTTP/2 client


class Upgraded:
    """An HTTP/1.1 connection upgraded to h2c by the `h2` package's client."""

    def __init__(self, port, path, extra=b"", eager=False):
        """eager: the preface and a stream 3 GET /eager go in the same write as the request."""
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
        self.conn = h2conn.H2Connection(config=h2config.H2Configuration(client_side=True, header_encoding="utf-8"))
        settings = self.conn.initiate_upgrade_connection()
        req = b"GET " + path + b" HTTP/1.1\r\nHost: up.example\r\n" + upgrade_fields(settings) + extra + b"\r\n"
        self.pending = []
        self.out = {}
        if eager:
            self.conn.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":authority", "up.example"),
                                       (":path", "/eager")], end_stream=True)
            req += self.conn.data_to_send()
        self.s.sendall(req)
        data = recv_head(self.s)
        self.head, _, rest = data.partition(b"\r\n\r\n")
        if self.head.startswith(b"HTTP/1.1 101 "):
            self.s.sendall(self.conn.data_to_send())
            if rest:
                self.pending = self.conn.receive_data(rest)

    def request(self, method, path, body=b"", fields=()):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"), (":authority", "up.example"), (":path", path)]
        hdrs += list(fields)
        self.conn.send_headers(sid, hdrs, end_stream=not body)
        for i in range(0, len(body), 16384):   # within the peer's window (64 KiB) and frame size
            self.conn.send_data(sid, body[i:i + 16384], end_stream=i + 16384 >= len(body))
        self.s.sendall(self.conn.data_to_send())
        return sid

    def wait(self, ids):
        """Runs until every stream in ids ended: {id: (headers, body)}."""
        ids = set(ids)
        for i in ids:
            self.out.setdefault(i, [None, b""])
        done = set()
        while True:
            for ev in self.pending:
                if isinstance(ev, h2events.ResponseReceived):
                    self.out[ev.stream_id][0] = dict(ev.headers)
                elif isinstance(ev, h2events.DataReceived):
                    self.out[ev.stream_id][1] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2events.StreamEnded):
                    done.add(ev.stream_id)
                elif isinstance(ev, (h2events.StreamReset, h2events.ConnectionTerminated)):
                    raise AssertionError(f"unexpected {ev}")
            self.pending = []
            self.s.sendall(self.conn.data_to_send())
            if ids <= done:
                return {i: tuple(self.out[i]) for i in ids}
            d = self.s.recv(65536)
            assert d, "connection closed"
            self.pending = self.conn.receive_data(d)

    def close(self):
        self.s.close()


def test_h2_client_upgrade_then_more_streams(up):
    p, _ = up
    u = Upgraded(p.port, b"/one?x=1", extra=b"X-First: 1\r\nTE: trailers, deflate\r\nCookie: a=1\r\n")
    try:
        assert u.head.startswith(b"HTTP/1.1 101 "), u.head
        assert b"\r\nupgrade: h2c" in u.head.lower() and b"\r\nconnection: upgrade" in u.head.lower(), u.head
        r = u.wait([1])
        h, body = r[1]
        assert h[":status"] == "200", h
        d = json.loads(body)
        assert d["path"] == "/one?x=1" and d["host"] == "up.example", d
        assert d["headers"]["X-First"] == ["1"] and d["headers"]["Cookie"] == ["a=1"], d
        # te: trailers is the one TE value HTTP/2 carries; h2.c sends it on as "TE: trailers" + "Connection: te"
        assert d["headers"]["Te"] == ["trailers"] and d["headers"]["Connection"] == ["te"], d
        assert not {k.lower() for k in d["headers"]} & {"upgrade", "http2-settings"}, d
        # more streams on the same connection, concurrently: a GET, an upload, a download
        payload = bytes(range(256)) * 200
        s3 = u.request("GET", "/two", fields=[("x-n", "2")])
        s5 = u.request("POST", "/three", body=payload, fields=[("content-length", str(len(payload)))])
        s7 = u.request("GET", "/four?size=300000")
        assert (s3, s5, s7) == (3, 5, 7)
        r = u.wait([s3, s5, s7])
        assert r[3][0][":status"] == "200" and json.loads(r[3][1])["headers"]["X-N"] == ["2"], r[3]
        d = json.loads(r[5][1])
        assert d["method"] == "POST" and d["body_bytes"] == len(payload), d
        assert r[7][0][":status"] == "200" and len(r[7][1]) == 300000, (r[7][0], len(r[7][1]))
    finally:
        u.close()


def test_upgrade_answered_locally_on_stream1(env):
    # stream 1 is routed like any stream: no matching route is an HTTP/2 404
    e = env.echo("only-x")
    p = env.pylon(backend("echo", e.port) + [httproute("r", [rule([match("/x")], [ref("echo")])])])
    u = Upgraded(p.port, b"/nothing")
    try:
        assert u.head.startswith(b"HTTP/1.1 101 "), u.head
        assert u.wait([1])[1][0][":status"] == "404"
    finally:
        u.close()


def test_preface_in_the_same_write_as_the_request(up):
    # bytes after the upgrading request (the preface, a SETTINGS, a stream 3) are HTTP/2's
    p, _ = up
    u = Upgraded(p.port, b"/first", eager=True)
    try:
        assert u.head.startswith(b"HTTP/1.1 101 "), u.head
        r = u.wait([1, 3])
        assert json.loads(r[1][1])["path"] == "/first" and json.loads(r[3][1])["path"] == "/eager", r
    finally:
        u.close()
