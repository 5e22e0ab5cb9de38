"""HTTP/2 over TLS to backends (issue 6): a cluster that is HTTP/2 (appProtocol
kubernetes.io/h2c, or a GRPCRoute backend) and has a BackendTLSPolicy is reached
through the h2up session pool over verified TLS with ALPN "h2". Backends: the Go
gRPC echo server (tests/grpc) and tests/h2cecho, both in their TLS modes. Covers
gRPC unary and bidirectional streaming calls, HTTP/1.1 and HTTP/2 clients to an
HTTPRoute backend, a wrong CA / wrong SAN / changed policy failing closed, a
backend that offers only http/1.1 by ALPN (502, log line saying ALPN), many
concurrent streams sharing one TLS connection (connections counted by the
backend), and the Gateway's client certificate presented to the backend.

Skipped without Go (the backends are built with the local toolchain)."""
import json
import re
import subprocess
import threading

import pytest

from helpers import (SLOW, Echo, LoopbackServer, fetch, free_port, gatewayclass, httproute, match, ref, rule,
                     wait_until)
from test_backend_client_cert import _gw, _policy
from test_backend_tls import TLSHTTP, policy
from test_grpc import call, gref, grpc_server, grpcroute, h2c_backend, tools  # noqa: F401 (fixture)
from test_h2_backends import curl_h2
from test_h2c_bridge import app_service, h2c_bin, pattern  # noqa: F401 (fixture)
from tlsutil import CA, ca_configmap, tls_secret

HOST = "secure.example.com"
CA_REF = [("ConfigMap", "ca")]


@pytest.fixture
def pki(tmp_path):
    return CA(tmp_path / "pki"), CA(tmp_path / "pki2", name="stranger-ca")


def tls_args(cert, client_ca=None):
    args = ["-tls-cert", str(cert[0]), "-tls-key", str(cert[1])]
    if client_ca:
        args += ["-client-ca", str(client_ca)]
    return args


def h2tls_echo(env, binary, cert, alpn="h2", client_ca=None):
    """tests/h2cecho serving TLS with cert, offering alpn."""
    e = Echo("h2tls", env._log("h2tls-echo"), cmd=[binary, *tls_args(cert, client_ca), "-alpn", alpn])
    env.procs.append(e)
    return e


def tls_log(p, cluster, what):
    wait_until(lambda: re.search(rf"cluster {re.escape(cluster)}: TLS to backend .*{what}", p.log()), 5,
               what=f"TLS log line for {cluster} ({what})")


def test_grpcroute_to_tls_backend(env, tools, pki):
    ca, stranger = pki
    good = grpc_server(env, tools, "tls", args=tls_args(ca.issue(HOST)))
    rogue = grpc_server(env, tools, "rogue", args=tls_args(stranger.issue(HOST)))
    objs = [ca_configmap("ca", ca.crt)]
    objs += h2c_backend("g-ok", good.port, app_protocol=None)        # GRPCRoute: h2 implied
    objs += h2c_backend("g-h2c", good.port)                          # explicit kubernetes.io/h2c
    objs += h2c_backend("g-badca", rogue.port) + h2c_backend("g-badsan", good.port)
    objs += [
        policy("ok", "g-ok", HOST, ca_refs=CA_REF),
        policy("h2c", "g-h2c", HOST, ca_refs=CA_REF),
        policy("badca", "g-badca", HOST, ca_refs=CA_REF),
        policy("badsan", "g-badsan", HOST, ca_refs=CA_REF, sans=["other.example.com"]),
        grpcroute("g", [{"matches": [{"method": {"service": s}}], "backendRefs": [gref(b)]} for s, b in
                        (("echo.Echo", "g-ok"), ("h2c.Echo", "g-h2c"), ("badca.Echo", "g-badca"),
                         ("badsan.Echo", "g-badsan"))], hostnames=["grpc.example.com"]),
    ]
    p = env.pylon(objs, workers=1)
    r = call(tools, p.port, "/echo.Echo/Say", data="ping", md=["x-echo-header=h", "x-echo-trailer=t"])
    assert r["code"] == 0, r
    assert r["body"]["server"] == "tls" and r["body"]["payload"] == "ping", r
    assert r["header"]["x-echo-header"] == ["h"] and r["trailer"]["x-echo-trailer"] == ["t"], r
    # bidirectional streaming: each message answered before the next is sent
    r = call(tools, p.port, "/echo.Echo/ChatStream", data="m", stream=6, md=["x-echo-trailer=end"])
    assert r["code"] == 0 and r["ok"] == 6, r
    replies = [json.loads(x) for x in r["replies"]]
    assert [x["payload"] for x in replies] == [f"m-{i}" for i in range(6)], replies
    assert [x["seq"] for x in replies] == list(range(6))
    assert r["trailer"]["x-echo-trailer"] == ["end"], r
    # an error status from the TLS backend passes through
    r = call(tools, p.port, "/echo.Echo/Say", md=["x-want-code=9"])
    assert r["code"] == 9, r
    # many concurrent calls and large messages: all on the one pooled TLS session
    r = call(tools, p.port, "/echo.Echo/Say", parallel=60)
    assert r["code"] == 0 and r["ok"] == 60, r
    r = call(tools, p.port, "/echo.Echo/Say", size=2_000_000)
    assert r["code"] == 0 and 2_000_000 < int(r["reply"].split()[0]) < 2_100_000, r
    r = call(tools, p.port, "/echo.Echo/Say")
    assert r["body"]["conns"] == 1, r
    # appProtocol kubernetes.io/h2c + BackendTLSPolicy: the same (its own cluster, its own session)
    r = call(tools, p.port, "/h2c.Echo/Say")
    assert r["code"] == 0 and r["body"]["server"] == "tls" and r["body"]["conns"] == 2, r
    # verification fails closed: UNAVAILABLE, a log line, nothing reaches a backend
    r = call(tools, p.port, "/badca.Echo/Say")
    assert r["code"] == 14, r
    tls_log(p, "default/g-badca:50051", "unable to get local issuer")
    r = call(tools, p.port, "/badsan.Echo/Say")
    assert r["code"] == 14, r
    tls_log(p, "default/g-badsan:50051", "subjectAltNames")


def test_http1_and_h2_clients_to_h2_tls_backend(env, h2c_bin, pki, tmp_path):
    ca, _ = pki
    e = h2tls_echo(env, h2c_bin, ca.issue(HOST))
    objs = [ca_configmap("ca", ca.crt)] + app_service("h2", [e.port]) + [
        policy("p", "h2", HOST, ca_refs=CA_REF), httproute("r", [rule([match("/")], [ref("h2")])])]
    p = env.pylon(objs)
    # HTTP/1.1 client
    r = p.get("/x?q=1", host="app.example")
    assert r.status == 200, r
    j = r.json()
    assert j["proto"] == "HTTP/2.0" and j["tls"] and j["alpn"] == "h2" and j["sni"] == HOST, j
    assert j["path"] == "/x?q=1" and j["host"] == "app.example", j
    body = pattern(300_000)
    r = p.get("/post", method="POST", body=body)
    assert r.status == 200, r
    j = r.json()
    assert j["body_len"] == len(body) and j["content_length"] == len(body), j
    r = p.get("/big?n=2000000")
    assert r.status == 200 and len(r.body) == 2_000_000 and r.body == pattern(2_000_000), (r.status, len(r.body))
    r = p.get("/trailers")
    assert r.status == 200 and r.body == b"body with trailers\n", r
    # HTTP/2 client (prior knowledge)
    tail, out = curl_h2(p.port, "/h2path")
    assert tail == "2 200", (tail, out)
    j = json.loads(out)
    assert j["proto"] == "HTTP/2.0" and j["tls"] and j["path"] == "/h2path", j
    f = tmp_path / "up.bin"
    f.write_bytes(body)
    tail, out = curl_h2(p.port, "/upload", "--data-binary", f"@{f}")
    assert tail == "2 200" and json.loads(out)["body_len"] == len(body), (tail, out[:200])
    tail, out = curl_h2(p.port, "/big?n=3000000&cl=1")
    assert tail == "2 200" and len(out) == 3_000_000, (tail, len(out))
    # a new policy (other hostname) never reuses the session verified under the old one
    objs[-2] = policy("p", "h2", "other.example.com", ca_refs=CA_REF)
    p.write("50-objects.yaml", objs)
    wait_until(lambda: p.get("/after").status == 502, 5, what="the changed policy to fail closed")
    tls_log(p, "default/h2:80", "hostname other.example.com")


def test_backend_without_h2_alpn_is_502(env, h2c_bin, pki):
    ca, _ = pki
    # Go's TLS server offering http/1.1 only: alert no_application_protocol
    e = h2tls_echo(env, h2c_bin, ca.issue(HOST), alpn="http/1.1")
    # an HTTPS/1.1 server without ALPN: the handshake completes, nothing selected
    h1 = TLSHTTP("h1", *ca.issue(HOST))
    try:
        objs = [ca_configmap("ca", ca.crt)] + app_service("h2", [e.port]) + app_service("h1", [h1.port]) + [
            policy("p", "h2", HOST, ca_refs=CA_REF), policy("p1", "h1", HOST, ca_refs=CA_REF),
            httproute("r", [rule([match("/one")], [ref("h1")]), rule([match("/")], [ref("h2")])])]
        p = env.pylon(objs)
        r = p.get("/x")
        assert r.status == 502 and b"Expected h2c" not in r.body, r
        tail, out = curl_h2(p.port, "/y")
        assert tail == "2 502" and "Expected h2c" not in out, (tail, out)
        tls_log(p, "default/h2:80", "ALPN: the backend accepts no protocol pylon offers")
        r = p.get("/one/x")
        assert r.status == 502, r
        tail, out = curl_h2(p.port, "/one/y")
        assert tail == "2 502", (tail, out)
        tls_log(p, "default/h1:80", "ALPN: the backend selected no protocol")
        assert h1.paths == []
    finally:
        h1.stop()


def test_concurrent_streams_share_one_tls_connection(env, h2c_bin, pki):
    ca, _ = pki
    e = h2tls_echo(env, h2c_bin, ca.issue(HOST))
    objs = [ca_configmap("ca", ca.crt)] + app_service("h2", [e.port]) + [
        policy("p", "h2", HOST, ca_refs=CA_REF), httproute("r", [rule([match("/")], [ref("h2")])])]
    p = env.pylon(objs, workers=1)
    # HTTP/1.1 clients at once, each request held 300 ms by the backend: concurrent streams
    results = []

    def one(i):
        results.append(fetch(p.port, f"/sleep?ms=300&i={i}", timeout=20 * SLOW).status)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30 * SLOW)
    assert results == [200] * 30, results
    # an HTTP/2 client with 50 streams in flight
    r = subprocess.run(["h2load", "-n", "300", "-c", "1", "-m", "50", f"http://127.0.0.1:{p.port}/sleep?ms=20"],
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert re.search(r"status codes: 300 2xx", r.stdout), r.stdout[-1500:]
    j = p.get("/last").json()
    assert j["conns"] == 1, j


def test_client_certificate_over_h2_tls(env, h2c_bin, pki):
    ca, _ = pki
    e = h2tls_echo(env, h2c_bin, ca.issue(HOST), client_ca=ca.crt)
    port, port2 = free_port(), free_port()
    objs = [gatewayclass(), _gw(port, client_ref={"group": "", "kind": "Secret", "name": "client"}),
            _gw(port2, name="nocert"), tls_secret("client", *ca.issue("pylon-client", client=True)),
            ca_configmap("ca", ca.crt), _policy("h2")] + app_service("h2", [e.port]) + [
            httproute("r", [rule([match("/")], [ref("h2")])]),
            httproute("r2", [rule([match("/")], [ref("h2")])], parent="nocert")]
    env.pylon(objs, gateway_obj=False)
    r = fetch(port, "/x")
    assert r.status == 200, r
    assert r.json()["client_cn"] == "pylon-client", r
    tail, out = curl_h2(port, "/y")
    assert tail == "2 200" and json.loads(out)["client_cn"] == "pylon-client", (tail, out)
    # a Gateway without a client certificate: the backend refuses the connection
    assert fetch(port2, "/x").status == 502


class SilentTLS(LoopbackServer):
    """Accepts and reads the ClientHello, never answers: a handshake that cannot finish."""

    def __init__(self):
        self.hellos = 0
        super().__init__(threaded=True)

    def serve(self, c):
        try:
            c.settimeout(10)
            if c.recv(65536):
                self.hellos += 1
            c.recv(65536)
        except OSError:
            pass
        finally:
            c.close()


def test_handshake_timeout_is_504(env, pki):
    # the connect timeout covers the handshake: 504, as for an HTTP/1.1 backend (upstream.c)
    ca, _ = pki
    b = SilentTLS()
    try:
        objs = [ca_configmap("ca", ca.crt)] + app_service("h2", [b.port]) + [
            policy("p", "h2", HOST, ca_refs=CA_REF), httproute("r", [rule([match("/")], [ref("h2")])])]
        p = env.pylon(objs, args=["--connect-timeout", "300"])
        r = p.get("/x")
        assert r.status == 504, r
        tail, _ = curl_h2(p.port, "/y")
        assert tail == "2 504", tail
        tls_log(p, "default/h2:80", "handshake timed out")
        assert b.hellos >= 1
    finally:
        b.stop()
