"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT): a real HTTP/2 client (the
`h2` package) opens WebSockets through pylon's h2c and h2 (TLS ALPN) listeners to
an HTTP/1.1 WebSocket backend written here (RFC 6455 framing, echo), with
frames echoed both ways, 1 MB messages, closes from either side, a backend
reset, a refused upgrade, a bad Sec-WebSocket-Accept and an h2c cluster."""
import base64
import hashlib
import os
import select
import socket
import ssl
import struct
import time

import pytest

from helpers import SLOW, LoopbackServer, backend, endpointslice, free_port, httproute, match, recv_head, ref, rule
from tlsutil import CA, client_ctx, https_listener, tls_secret

h2conn = pytest.importorskip("h2.connection", reason="python h2 package missing (scripts/deps.sh installs it)")
h2config = pytest.importorskip("h2.config")
h2events = pytest.importorskip("h2.events")
h2settings = pytest.importorskip("h2.settings")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MB = 1024 * 1024
CONNECT_ERROR = 0xA


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


# ---------------------------------------------------------------- RFC 6455 framing

def ws_frame(opcode, payload, mask=True):
    n = len(payload)
    b1 = 0x80 if mask else 0
    if n < 126:
        head = bytes([0x80 | opcode, b1 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, b1 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, b1 | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big") if n else b""
    return head + key + masked


def ws_parse(buf):
    """(opcode, payload, bytes used) of the first whole frame in buf, or None."""
    if len(buf) < 2:
        return None
    op, b1 = buf[0] & 0x0F, buf[1]
    n, i = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, i = struct.unpack(">H", bytes(buf[2:4]))[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, i = struct.unpack(">Q", bytes(buf[2:10]))[0], 10
    key = None
    if b1 & 0x80:
        if len(buf) < i + 4:
            return None
        key, i = bytes(buf[i:i + 4]), i + 4
    if len(buf) < i + n:
        return None
    payload = bytes(buf[i:i + n])
    if key and n:
        stream = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return op, payload, i + n


# ---------------------------------------------------------------- backend

class WSBackend(LoopbackServer):
    """HTTP/1.1 WebSocket server. By path: /refuse answers 403; /badaccept a 101 with a
    wrong Sec-WebSocket-Accept; /close sends "bye" and a close frame, then closes;
    anything else echoes frames (close answered with close, then TCP close). A "reset"
    text frame makes it abort the connection (RST). Records heads and half-closes.
    With tls=(crt, key) it speaks TLS (a BackendTLSPolicy backend)."""

    def __init__(self, tls=None):
        self.heads = []
        self.early = []     # bytes that came with the upgrade request, before our 101
        self.eofs = 0
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        super().__init__(threaded=True)

    def serve(self, c):
        try:
            if self.ctx:
                c.settimeout(10 * SLOW)
                c = self.ctx.wrap_socket(c, server_side=True)
            self._serve(c)
        except OSError:
            pass
        finally:
            c.close()

    def _serve(self, c):
        c.settimeout(20 * SLOW)
        data = recv_head(c)
        if b"\r\n\r\n" not in data:
            return
        head, rest = data.split(b"\r\n\r\n", 1)
        self.heads.append(head)
        self.early.append(len(rest))
        lines = head.split(b"\r\n")
        path = lines[0].split(b" ")[1]
        h = {}
        for l in lines[1:]:
            k, _, v = l.partition(b":")
            h[k.strip().lower()] = v.strip()
        if path.startswith(b"/refuse"):
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\n"
                      b"no websocket here")
            return
        key = h.get(b"sec-websocket-key", b"")
        if len(base64.b64decode(key)) != 16 or h.get(b"upgrade", b"").lower() != b"websocket":
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        acc = accept_of(b"not the key") if path.startswith(b"/badaccept") else accept_of(key)
        extra = b""
        if b"sec-websocket-protocol" in h:
            extra = b"Sec-WebSocket-Protocol: " + h[b"sec-websocket-protocol"].split(b",")[0].strip() + b"\r\n"
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + acc + b"\r\n" + extra + b"X-Backend: ws\r\n\r\n")
        if path.startswith(b"/close"):
            c.sendall(ws_frame(1, b"bye", mask=False) + ws_frame(8, struct.pack(">H", 1000), mask=False))
            c.shutdown(socket.SHUT_WR)
            return
        buf = bytearray(rest)
        while True:
            f = ws_parse(buf)
            if f is None:
                d = c.recv(1 << 20)
                if not d:
                    self.eofs += 1
                    return
                buf += d
                continue
            op, payload, used = f
            del buf[:used]
            if op == 8:
                c.sendall(ws_frame(8, payload, mask=False))
                return
            if op == 1 and payload == b"reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            c.sendall(ws_frame(10 if op == 9 else op, payload, mask=False))


# ---------------------------------------------------------------- HTTP/2 client

class H2:
    """One HTTP/2 client connection driven by the h2 state machine."""

    def __init__(self, sock, authority):
        self.s = sock
        self.authority = authority
        self.c = h2conn.H2Connection(h2config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.c.initiate_connection()
        self.settings = None
        self.resp, self.data, self.ended, self.resets = {}, {}, set(), {}
        self.flush()
        self.until(lambda: self.settings is not None, "server SETTINGS")

    def flush(self):
        d = self.c.data_to_send()
        if d:
            self.s.sendall(d)

    def pump(self, timeout):
        r, _, _ = select.select([self.s], [], [], timeout)
        if not r:
            return
        d = self.s.recv(1 << 18)
        if not d:
            raise AssertionError("server closed the connection")
        for ev in self.c.receive_data(d):
            if isinstance(ev, h2events.RemoteSettingsChanged):
                self.settings = {int(k): v.new_value for k, v in ev.changed_settings.items()}
            elif isinstance(ev, h2events.ResponseReceived):
                self.resp[ev.stream_id] = ev.headers
            elif isinstance(ev, h2events.DataReceived):
                self.data.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2events.StreamReset):
                self.resets[ev.stream_id] = ev.error_code
        self.flush()

    def until(self, cond, what, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.pump(0.05)

    def request(self, headers, end=False):
        sid = self.c.get_next_available_stream_id()
        self.c.send_headers(sid, headers, end_stream=end)
        self.flush()
        return sid

    def websocket(self, path, extra=(), scheme="http"):
        """Opens a WebSocket; returns (stream id, status, headers dict)."""
        sid = self.request([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", scheme),
                            (":path", path), (":authority", self.authority),
                            ("sec-websocket-version", "13")] + list(extra))
        self.until(lambda: sid in self.resp or sid in self.resets, f"response on stream {sid}")
        h = dict(self.resp.get(sid, []))
        return sid, int(h.get(":status", 0)), h

    def send(self, sid, payload, end=False):
        """DATA within the flow-control windows, reading (and crediting) while they are shut."""
        view = memoryview(payload)
        while view:
            n = min(self.c.local_flow_control_window(sid), self.c.max_outbound_frame_size, len(view))
            if n <= 0:
                self.pump(0.05)
                continue
            self.c.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
        if end:
            self.c.end_stream(sid)
            self.flush()

    def frame(self, sid, timeout=15):
        """The next WebSocket frame the server sent on sid: (opcode, payload)."""
        buf = self.data.setdefault(sid, bytearray())
        self.until(lambda: ws_parse(buf) is not None or sid in self.ended or sid in self.resets,
                   f"a frame on stream {sid}", timeout)
        f = ws_parse(buf)
        assert f is not None, (sid in self.ended, self.resets.get(sid), bytes(buf[:100]))
        del buf[:f[2]]
        return f[0], f[1]

    def close(self):
        self.s.close()


def h2c_client(port):
    return H2(socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW), f"127.0.0.1:{port}")


def tls_client(port, ca, name="h2.example.com"):
    ctx = client_ctx(ca.crt)
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW), server_hostname=name)
    assert s.selected_alpn_protocol() == "h2"
    return H2(s, f"{name}:{port}")


@pytest.fixture
def wsb():
    b = WSBackend()
    yield b
    b.stop()


def ws_route(b, timeouts=None, filters=None):
    return backend("ws", b.port) + [httproute("r", [rule([match("/")], [ref("ws")], filters=filters,
                                                         timeouts=timeouts)])]


def echo_roundtrips(cl, sid):
    cl.send(sid, ws_frame(1, b"hello over h2"))
    assert cl.frame(sid) == (1, b"hello over h2")
    cl.send(sid, ws_frame(2, bytes(range(256)) * 3))
    assert cl.frame(sid) == (2, bytes(range(256)) * 3)
    big = os.urandom(MB)
    cl.send(sid, ws_frame(2, big))           # 1 MB up, through the stream and connection windows
    assert cl.frame(sid, timeout=30) == (2, big)   # and 1 MB down
    cl.send(sid, ws_frame(8, struct.pack(">H", 1000)))
    assert cl.frame(sid) == (8, struct.pack(">H", 1000))
    cl.until(lambda: sid in cl.ended, "END_STREAM after the backend closed")
    cl.send(sid, b"", end=True)
    assert sid not in cl.resets


# ---------------------------------------------------------------- tests

def test_h2c_websocket_handshake_and_echo(env, wsb):
    mod = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "X-Route", "value": "ws"}]}}
    p = env.pylon(ws_route(wsb, filters=[mod]))
    cl = h2c_client(p.port)
    assert cl.settings.get(int(h2settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)) == 1, cl.settings
    sid, status, h = cl.websocket("/chat/room?x=1", extra=[("sec-websocket-protocol", "chat, superchat"),
                                                           ("origin", "http://example.com")])
    assert status == 200, h
    assert h.get("sec-websocket-protocol") == "chat" and h.get("x-backend") == "ws", h
    assert "sec-websocket-accept" not in h and "upgrade" not in h and "connection" not in h, h
    head = wsb.heads[-1].decode()
    lines = head.split("\r\n")
    assert lines[0] == "GET /chat/room?x=1 HTTP/1.1", head
    hl = [l.lower() for l in lines]
    for want in (f"host: 127.0.0.1:{p.port}", "connection: upgrade", "upgrade: websocket",
                 "sec-websocket-version: 13", "sec-websocket-protocol: chat, superchat",
                 "origin: http://example.com", "x-route: ws", "x-forwarded-for: 127.0.0.1",
                 "x-forwarded-proto: http"):
        assert want in hl, (want, head)
    assert not any(l.startswith(("content-length", "transfer-encoding", "te:")) for l in hl), head
    echo_roundtrips(cl, sid)
    # the connection goes on: a second WebSocket, with a key of its own
    sid2, status, _ = cl.websocket("/again")
    assert status == 200
    keys = [l.split(":", 1)[1].strip() for hd in wsb.heads for l in hd.decode().split("\r\n")
            if l.lower().startswith("sec-websocket-key")]
    assert len(keys) == 2 and keys[0] != keys[1], keys
    cl.send(sid2, ws_frame(1, b"two"))
    assert cl.frame(sid2) == (1, b"two")
    cl.close()


def test_h2_tls_websocket_echo(env, wsb, tmp_path):
    ca = CA(tmp_path / "pki")
    port = free_port()
    objs = [tls_secret("c", *ca.issue("h2.example.com"))] + ws_route(wsb)
    env.pylon(objs, listeners=[https_listener("h", port, ["c"])])
    cl = tls_client(port, ca)
    assert cl.settings.get(int(h2settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)) == 1, cl.settings
    sid, status, h = cl.websocket("/tls", scheme="https")
    assert status == 200, h
    assert "x-forwarded-proto: https" in wsb.heads[-1].decode().lower()
    echo_roundtrips(cl, sid)
    cl.close()


def test_websocket_to_tls_backend(env, tmp_path):
    from test_backend_tls import policy
    from tlsutil import ca_configmap
    ca = CA(tmp_path / "pki")
    b = WSBackend(tls=ca.issue("ws.example.com"))
    try:
        objs = [ca_configmap("ca", ca.crt), policy("p", "ws", "ws.example.com", ca_refs=[("ConfigMap", "ca")])]
        p = env.pylon(objs + ws_route(b))
        cl = h2c_client(p.port)
        sid, status, h = cl.websocket("/secure")
        assert status == 200, h
        echo_roundtrips(cl, sid)
        # half-close over TLS: close_notify, then the backend still answers
        sid, status, _ = cl.websocket("/secure-half")
        assert status == 200
        cl.send(sid, ws_frame(1, b"fin"), end=True)
        assert cl.frame(sid) == (1, b"fin")
        cl.until(lambda: sid in cl.ended, "END_STREAM")
        assert b.eofs == 1 and sid not in cl.resets
    finally:
        b.stop()


def test_data_before_the_200_waits_for_the_101(env, wsb):
    p = env.pylon(ws_route(wsb))
    cl = h2c_client(p.port)
    sid = cl.request([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                      (":path", "/eager"), (":authority", cl.authority), ("sec-websocket-version", "13")])
    cl.send(sid, ws_frame(1, b"early bird"))             # optimistic: before the response
    assert cl.frame(sid) == (1, b"early bird")
    assert dict(cl.resp[sid])[":status"] == "200"
    assert wsb.early == [0]                               # held back until the backend said 101


def test_client_end_stream_half_closes_backend(env, wsb):
    p = env.pylon(ws_route(wsb))
    cl = h2c_client(p.port)
    sid, status, _ = cl.websocket("/half")
    assert status == 200
    cl.send(sid, ws_frame(1, b"last words"), end=True)   # END_STREAM right behind the data
    assert cl.frame(sid) == (1, b"last words")            # the backend still answers after our FIN
    cl.until(lambda: sid in cl.ended, "END_STREAM once the backend closes")
    assert wsb.eofs == 1 and sid not in cl.resets


def test_backend_close_ends_stream(env, wsb):
    p = env.pylon(ws_route(wsb))
    cl = h2c_client(p.port)
    sid, status, _ = cl.websocket("/close")
    assert status == 200
    assert cl.frame(sid) == (1, b"bye")
    assert cl.frame(sid) == (8, struct.pack(">H", 1000))
    cl.until(lambda: sid in cl.ended, "END_STREAM after backend EOF")
    # the client's close reply may still be sent (the backend stopped reading: dropped, no reset)
    cl.send(sid, ws_frame(8, struct.pack(">H", 1000)), end=True)
    cl.pump(0.3)
    assert sid not in cl.resets, cl.resets
    # the connection is healthy
    sid2, status, _ = cl.websocket("/next")
    assert status == 200


def test_backend_reset_is_connect_error(env, wsb):
    p = env.pylon(ws_route(wsb))
    cl = h2c_client(p.port)
    sid, status, _ = cl.websocket("/rst")
    assert status == 200
    cl.send(sid, ws_frame(1, b"reset"))
    cl.until(lambda: sid in cl.resets, "RST_STREAM after the backend reset")
    assert cl.resets[sid] == CONNECT_ERROR, cl.resets


def test_refused_upgrade_is_forwarded(env, wsb):
    p = env.pylon(ws_route(wsb))
    cl = h2c_client(p.port)
    sid, status, h = cl.websocket("/refuse")
    assert status == 403, h
    cl.until(lambda: sid in cl.ended, "the 403's body")
    assert bytes(cl.data.get(sid, b"")) == b"no websocket here"


def test_bad_accept_is_502(env, wsb):
    p = env.pylon(ws_route(wsb))
    cl = h2c_client(p.port)
    sid, status, _ = cl.websocket("/badaccept")
    assert status == 502
    assert "wrong Sec-WebSocket-Accept" in p.log()


def test_h2c_cluster_and_other_connects_refused(env, wsb):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h2", "namespace": "default"},
           "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}}
    objs = [svc] + endpointslice("h2", [wsb.port]) + [httproute("r", [rule([match("/")], [ref("h2")])])]
    p = env.pylon(objs)
    cl = h2c_client(p.port)
    sid, status, _ = cl.websocket("/ws")
    assert status == 501
    assert "WebSocket over HTTP/2 to h2c cluster default/h2" in p.log(), p.log()[-2000:]
    assert wsb.heads == []
    # plain CONNECT (a TCP tunnel) and an unknown :protocol are errors too
    sid = cl.request([(":method", "CONNECT"), (":authority", "example.com:443")])
    cl.until(lambda: sid in cl.resp, "plain CONNECT answer")
    assert dict(cl.resp[sid])[":status"] == "405"
    sid = cl.request([(":method", "CONNECT"), (":protocol", "webtransport"), (":scheme", "http"),
                      (":path", "/"), (":authority", cl.authority)])
    cl.until(lambda: sid in cl.resp, "unknown :protocol answer")
    assert dict(cl.resp[sid])[":status"] == "501"


def test_tunnel_outlives_request_timeout_not_idle(env, wsb):
    p = env.pylon(ws_route(wsb, timeouts={"request": "1s"}), args=["--idle-timeout", "2500"])
    cl = h2c_client(p.port)
    sid, status, _ = cl.websocket("/long")
    assert status == 200
    for i in range(3):                      # 3 s in all: past the route's request timeout
        time.sleep(1.0)
        cl.send(sid, ws_frame(1, b"tick %d" % i))
        assert cl.frame(sid) == (1, b"tick %d" % i)
    assert sid not in cl.resets
    # silence beyond the idle timeout resets the stream
    t = time.monotonic()
    cl.until(lambda: sid in cl.resets, "idle reset", timeout=8)
    assert 1.5 < time.monotonic() - t < 6 * SLOW


# ---------------------------------------------------------------- request trailers

class BodyBackend(LoopbackServer):
    """HTTP/1.1 backend that reads each request's whole body as sent (raw chunked
    framing kept) and answers 200; records (head, raw body)."""

    def __init__(self):
        self.got = []
        super().__init__(threaded=True)

    def serve(self, c):
        try:
            c.settimeout(10 * SLOW)
            data = recv_head(c)
            if b"\r\n\r\n" not in data:
                return
            head, body = data.split(b"\r\n\r\n", 1)
            h = head.lower()
            if b"transfer-encoding: chunked" in h:
                while not (body.endswith(b"\r\n\r\n") and b"\r\n0\r\n" in b"\r\n" + body):
                    d = c.recv(65536)
                    if not d:
                        return
                    body += d
            else:
                n = int(h.split(b"content-length: ")[1].split(b"\r\n")[0]) if b"content-length: " in h else 0
                while len(body) < n:
                    body += c.recv(65536)
            self.got.append((head, body))
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except OSError:
            pass
        finally:
            c.close()


def test_request_trailers_reach_http1_backend(env):
    b = BodyBackend()
    try:
        p = env.pylon(backend("b", b.port) + [httproute("r", [rule([match("/")], [ref("b")])])])
        cl = h2c_client(p.port)
        base = [(":method", "POST"), (":scheme", "http"), (":path", "/up"), (":authority", cl.authority)]
        # no content-length: chunked toward the backend, trailers after the last chunk
        sid = cl.request(base + [("trailer", "x-checksum")])
        cl.send(sid, b"hello " * 1000)
        cl.c.send_headers(sid, [("x-checksum", "abc123"), ("grpc-status", "0"), ("trailer", "x"),
                                ("host", "evil")], end_stream=True)
        cl.flush()
        cl.until(lambda: sid in cl.ended, "response")
        assert dict(cl.resp[sid])[":status"] == "200"
        head, body = b.got[-1]
        assert b"transfer-encoding: chunked" in head.lower(), head
        tail = body[body.rindex(b"\r\n0\r\n") + 2:]
        assert tail == b"0\r\nx-checksum: abc123\r\ngrpc-status: 0\r\n\r\n", tail   # framing/routing fields dropped
        chunks, data = body[:body.rindex(b"\r\n0\r\n") + 2], b""
        while chunks:
            n, _, rest = chunks.partition(b"\r\n")
            data, chunks = data + rest[:int(n, 16)], rest[int(n, 16) + 2:]
        assert data == b"hello " * 1000
        # with a content-length, HTTP/1.1 has no place for them: dropped, body intact
        sid = cl.request(base + [("content-length", "5")])
        cl.send(sid, b"12345")
        cl.c.send_headers(sid, [("x-checksum", "zzz")], end_stream=True)
        cl.flush()
        cl.until(lambda: sid in cl.ended, "response")
        head, body = b.got[-1]
        assert b"content-length: 5" in head.lower() and body == b"12345", (head, body)
        # trailers right after the head (no DATA): a zero-length chunked body
        sid = cl.request(base)
        cl.c.send_headers(sid, [("x-only", "t")], end_stream=True)
        cl.flush()
        cl.until(lambda: sid in cl.ended, "response")
        head, body = b.got[-1]
        assert body == b"0\r\nx-only: t\r\n\r\n", (head, body)
        cl.close()
    finally:
        b.stop()


def test_http1_request_trailers_reach_http1_backend(env):
    # a chunked HTTP/1.1 request is re-chunked toward the backend with its trailer section (fields a
    # trailer must not carry dropped, names lower-cased); a request with a Content-Length has none
    b = BodyBackend()
    try:
        p = env.pylon(backend("b", b.port) + [httproute("r", [rule([match("/")], [ref("b")])])])
        req = (b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\nX-Sum:  abc \r\nHost: evil\r\nContent-Length: 9\r\nGrpc-Status: 0\r\n\r\n"
               b"POST /plain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n")
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10 * SLOW)
        try:
            s.sendall(req)
            raw = b""
            while raw.count(b"HTTP/1.1 200") < 2:
                d = s.recv(65536)
                assert d, raw
                raw += d
        finally:
            s.close()
        (h1, b1), (h2_, b2) = b.got[-2], b.got[-1]
        assert b"transfer-encoding: chunked" in h1.lower(), h1
        assert b1 == b"5\r\nhello\r\n0\r\nx-sum: abc\r\ngrpc-status: 0\r\n\r\n", b1
        assert b2 == b"3\r\nabc\r\n0\r\n\r\n", b2
    finally:
        b.stop()
