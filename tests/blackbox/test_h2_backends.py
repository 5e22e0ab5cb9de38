"""HTTP/2 client streams to backends beyond plain HTTP/1.1: a BackendTLSPolicy
cluster (verified TLS, pooled, failing closed), RequestMirror, and an h2c
cluster whose first endpoint refuses connections."""
import json
import re
import shutil
import subprocess

import pytest

from helpers import SLOW, backend, endpointslice, free_port, httproute, match, ref, rule, wait_until
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
