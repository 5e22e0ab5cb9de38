"""HTTP/2 client streams to backends beyond plain HTTP/1.1: a BackendTLSPolicy
cluster (verified TLS, pooled, failing closed), RequestMirror, and an h2c
cluster whose first endpoint refuses connections."""
import json
import re
import shutil
import subprocess
import time

import pytest

from helpers import (SLOW, LoopbackServer, backend, endpointslice, free_port, httproute, match, recv_head, ref, rule,
                     wait_until)
from test_backend_tls import TLSHTTP, policy
from tlsutil import CA, ca_configmap


def curl_h2(port, path, *extra):
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", *extra,
                        f"http://127.0.0.1:{port}{path}"], capture_output=True, timeout=30 * SLOW)
    body, _, tail = r.stdout.decode().rpartition("\n")
    return tail, body


def test_h2_stream_to_tls_backend(env, tmp_path):
    ca = CA(tmp_path / "pki")
    stranger = CA(tmp_path / "pki2", name="stranger-ca")
    good = TLSHTTP("good", *ca.issue("secure.example.com"))
    rogue = TLSHTTP("rogue", *stranger.issue("secure.example.com"))
    try:
        objs = [ca_configmap("ca", ca.crt)] + backend("ok", good.port) + backend("badca", rogue.port) + [
            policy("ok", "ok", "secure.example.com", ca_refs=[("ConfigMap", "ca")]),
            policy("badca", "badca", "secure.example.com", ca_refs=[("ConfigMap", "ca")]),
            httproute("r", [rule([match("/ok")], [ref("ok")]), rule([match("/badca")], [ref("badca")])]),
        ]
        p = env.pylon(objs)
        n0 = good.conns
        for i in range(3):
            tail, body = curl_h2(p.port, f"/ok/{i}")
            assert tail == "2 200" and body == f"good:/ok/{i}", (tail, body)
        assert "secure.example.com" in good.snis
        assert good.conns - n0 <= 2, good.conns - n0   # pooled like HTTP/1.1 requests' connections
        tail, body = curl_h2(p.port, "/badca/x")
        assert tail == "2 502" and "rogue:" not in body, (tail, body)
        wait_until(lambda: re.search(r"cluster default/badca:80: TLS to backend .*unable to get local issuer",
                                     p.log()), 5, what="verify log line")
        assert rogue.paths == []
    finally:
        good.stop()
        rogue.stop()


def test_h2_request_mirror(env):
    main, mirror = env.echo("main"), env.echo("mirror")
    mf = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}
    objs = backend("main", main.port) + backend("mirror", mirror.port) + [
        httproute("r", [rule([match("/m")], [ref("main")], filters=[mf])]),
    ]
    p = env.pylon(objs)
    tail, _ = curl_h2(p.port, "/m/h2-mirrored-marker")
    assert tail == "2 200", tail
    wait_until(lambda: "/m/h2-mirrored-marker" in mirror.stats()["recent"], 5, what="mirrored request")


class RecordingBackend(LoopbackServer):
    """An HTTP/1.1 backend that records each request's head and de-framed body
    (Content-Length or chunked), then answers 200 and closes."""

    def __init__(self):
        self.requests = []
        super().__init__(threaded=True)

    def serve(self, c):
        try:
            c.settimeout(5)
            data = recv_head(c)
            head, _, rest = data.partition(b"\r\n\r\n")
            fields = {ln.split(b":", 1)[0].strip().lower(): ln.split(b":", 1)[1].strip()
                      for ln in head.split(b"\r\n")[1:] if b":" in ln}
            if b"content-length" in fields:
                n = int(fields[b"content-length"])
                while len(rest) < n:
                    d = c.recv(65536)
                    if not d:
                        break
                    rest += d
                body = rest[:n]
            elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                while not rest.endswith(b"0\r\n\r\n"):
                    d = c.recv(65536)
                    if not d:
                        break
                    rest += d
                body, i = b"", 0
                while True:
                    j = rest.index(b"\r\n", i)
                    n = int(rest[i:j], 16)
                    if n == 0:
                        break
                    body += rest[j + 2:j + 2 + n]
                    i = j + 4 + n
            else:
                body = b""
            self.requests.append((head, body))
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def find(self, path):
        for head, body in self.requests:
            if head.split(b" ")[1] == path.encode():
                return head, body
        return None


def mirror_objs(main_svc, mirror_port, h2c_port=None):
    mf = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}
    return main_svc + backend("mirror", mirror_port) + [
        httproute("r", [rule([match("/m")], [ref("main")], filters=[mf])])]


@pytest.mark.parametrize("cluster", ["http1", "h2c"])
def test_h2_request_mirror_with_body(env, tmp_path, cluster):
    # the mirror gets the body byte-exact: with a content-length, without one (chunked toward it), and
    # none when the body is above the mirror bound (16 KiB), whatever the main cluster speaks
    mirror = RecordingBackend()
    try:
        if cluster == "h2c":
            # an h2c main backend: a second pylon (h2c with prior knowledge on its HTTP port)
            e = env.echo("inner")
            inner = env.pylon(backend("echo", e.port) + [httproute("r", [rule([match("/")], [ref("echo")])])])
            svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "main", "namespace": "default"},
                   "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                       "appProtocol": "kubernetes.io/h2c"}]}}
            main = [svc] + endpointslice("main", [inner.port])
        else:
            main = backend("main", env.echo("main").port)
        p = env.pylon(mirror_objs(main, mirror.port))
        small = bytes(range(256)) * 40 + b"\r\n0\r\n\r\n"      # 10 KiB, framing-like bytes inside
        blob = tmp_path / "small"
        blob.write_bytes(small)
        big = tmp_path / "big"
        big.write_bytes(b"b" * (16 * 1024 + 1))
        tail, body = curl_h2(p.port, "/m/cl", "--data-binary", f"@{blob}")
        assert tail == "2 200" and json.loads(body)["body_bytes"] == len(small), (tail, body)
        tail, body = curl_h2(p.port, "/m/chunked", "-T", str(blob), "-H", "content-length:")
        assert tail == "2 200" and json.loads(body)["body_bytes"] == len(small), (tail, body)
        tail, body = curl_h2(p.port, "/m/big", "--data-binary", f"@{big}")
        assert tail == "2 200", (tail, body)
        tail, body = curl_h2(p.port, "/m/empty", "-X", "POST")
        assert tail == "2 200", (tail, body)
        wait_until(lambda: mirror.find("/m/cl") and mirror.find("/m/chunked") and mirror.find("/m/empty"), 5,
                   what="mirrored requests")
        head, got = mirror.find("/m/cl")
        assert got == small and b"\r\nContent-Length: %d\r\n" % len(small) in head, head
        head, got = mirror.find("/m/chunked")
        assert got == small and b"\r\nTransfer-Encoding: chunked\r\n" in head, head
        assert mirror.find("/m/empty")[1] == b""
        assert head.startswith(b"PUT /m/chunked HTTP/1.1\r\n") and head.endswith(b"\r\nConnection: close"), head
        time.sleep(0.3)
        assert mirror.find("/m/big") is None
    finally:
        mirror.stop()


def test_h2c_backend_connect_retries_another_endpoint(env):
    # the h2c backend is a second pylon (it speaks h2c with prior knowledge on its HTTP port)
    e = env.echo("inner")
    inner = env.pylon(backend("echo", e.port) + [httproute("r", [rule([match("/")], [ref("echo")])])])
    dead = free_port()
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h2", "namespace": "default"},
           "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}}
    objs = [svc] + endpointslice("h2", [dead, inner.port]) + [httproute("r", [rule([match("/")], [ref("h2")])])]
    p = env.pylon(objs)
    for i in range(4):
        tail, body = curl_h2(p.port, f"/x/{i}")
        assert tail == "2 200", (i, tail, body, p.log()[-2000:])
        assert json.loads(body)["path"] == f"/x/{i}"
    # at least one of them met the dead endpoint first and went to the live one
    assert re.search(r"connect to 127\.0\.0\.1:\d+ failed: .*; trying 127\.0\.0\.1:" + str(inner.port), p.log()), \
        p.log()[-3000:]
