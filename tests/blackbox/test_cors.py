"""HTTPRoute CORS filter: preflights answered by pylon, CORS fields on backend
responses, over HTTP/1.1 and HTTP/2 (h2c prior knowledge), with curl."""
import json
import shutil
import subprocess
import tempfile

import pytest

from helpers import SLOW, backend, httproute, match, ref, rule

ACAO = "access-control-allow-origin"
ACAC = "access-control-allow-credentials"
ACAM = "access-control-allow-methods"
ACAH = "access-control-allow-headers"
ACEH = "access-control-expose-headers"
ACMA = "access-control-max-age"


def cors(**kw):
    return {"type": "CORS", "cors": kw}


@pytest.fixture
def gw(env):
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    e = env.echo("cors-pod")
    objs = backend("echo", e.port) + [
        httproute("cors", [
            rule([match("/c")], [ref("echo")], filters=[cors(
                allowOrigins=["https://www.foo.com", "https://*.bar.com", "http://localhost:3000"],
                allowMethods=["GET", "OPTIONS"], allowHeaders=["x-header-1", "x-header-2"],
                exposeHeaders=["x-header-3", "x-header-4"], allowCredentials=True, maxAge=3600)]),
            rule([match("/any")], [ref("echo")], filters=[cors(allowOrigins=["*"], allowMethods=["PUT"])]),
            rule([match("/star")], [ref("echo")], filters=[cors(
                allowOrigins=["*"], allowMethods=["*"], allowHeaders=["*"], allowCredentials=True)]),
            # a preflight needs no backend
            rule([match("/nobackend")], [ref("missing")], filters=[cors(allowOrigins=["*"])]),
            rule([match("/plain")], [ref("echo")]),
        ]),
        httproute("bad", [rule([match("/bad")], [ref("echo")],
                               filters=[cors(allowOrigins=["https://x.com/path"])])]),
    ]
    return env.pylon(objs), e


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def one(self, name):
        vals = self.all(name)
        assert len(vals) <= 1, (name, self.headers)
        return vals[0] if vals else None

    def cors_fields(self):
        return [k for k, _ in self.headers if k.startswith("access-control-")]


def curl(port, path, proto, method="GET", headers=None):
    """One request with curl; the response head is written to a file, the body to stdout."""
    with tempfile.NamedTemporaryFile() as head:
        args = ["curl", "-sS", "-D", head.name, "-X", method, "--max-time", str(10 * SLOW)]
        args.append("--http2-prior-knowledge" if proto == "h2" else "--http1.1")
        for k, v in (headers or {}).items():
            args += ["-H", f"{k}: {v}"]
        args.append(f"http://127.0.0.1:{port}{path}")
        r = subprocess.run(args, capture_output=True, timeout=30 * SLOW)
        assert r.returncode == 0, r
        lines = open(head.name, "rb").read().decode().split("\r\n")
    assert lines[0].startswith("HTTP/2 " if proto == "h2" else "HTTP/1.1 "), lines
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        if not line:
            break
        k, _, v = line.partition(":")
        headers.append((k.strip().lower(), v.strip()))
    return Resp(status, headers, r.stdout)


PROTOS = ["http1.1", "h2"]


def preflight(origin, method="GET", req_headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if req_headers:
        h["Access-Control-Request-Headers"] = req_headers
    return h


@pytest.mark.parametrize("proto", PROTOS)
def test_preflight_allowed(gw, proto):
    p, e = gw
    before = e.stats()["requests"]
    for origin in ["https://www.foo.com", "https://www.bar.com", "https://xpto.www.bar.com",
                   "https://www.foo.com:443", "http://localhost:3000"]:
        r = curl(p.port, "/c/x", proto, "OPTIONS", preflight(origin, "GET", "x-header-1, x-header-2"))
        assert r.status == 200, (origin, r.headers)
        assert r.one(ACAO) == origin
        assert r.one(ACAC) == "true"
        assert r.one(ACAM) == "GET, OPTIONS"
        assert r.one(ACAH) == "x-header-1, x-header-2"
        assert r.one(ACEH) == "x-header-3, x-header-4"
        assert r.one(ACMA) == "3600"
        assert "Origin" in r.one("vary")
        assert r.body == b""
    assert e.stats()["requests"] == before, "a preflight reached the backend"


@pytest.mark.parametrize("proto", PROTOS)
def test_preflight_denied(gw, proto):
    p, e = gw
    before = e.stats()["requests"]
    for origin in ["https://foobar.com", "https://bar.com", "http://www.foo.com", "https://www.foo.com:8443",
                   "http://localhost", "null"]:
        r = curl(p.port, "/c", proto, "OPTIONS", preflight(origin))
        assert r.status == 403, (origin, r.headers)
        assert r.cors_fields() == [], (origin, r.headers)
    assert e.stats()["requests"] == before


@pytest.mark.parametrize("proto", PROTOS)
def test_preflight_wildcards(gw, proto):
    p, _ = gw
    # "*" without credentials: "*" for any origin, port included
    r = curl(p.port, "/any", proto, "OPTIONS", preflight("https://foobar.com:12345", "PUT"))
    assert r.status == 200 and r.one(ACAO) == "*" and r.one(ACAM) == "PUT", r.headers
    assert r.one(ACAC) is None and r.one(ACMA) == "5"
    # "*" everything with credentials: echoes, never "*"
    r = curl(p.port, "/star", proto, "OPTIONS", preflight("https://other.foo.com", "PATCH", "x-a, x-b"))
    assert r.status == 200, r.headers
    assert r.one(ACAO) == "https://other.foo.com" and r.one(ACAC) == "true"
    assert r.one(ACAM) == "PATCH" and r.one(ACAH) == "x-a, x-b"
    r = curl(p.port, "/nobackend", proto, "OPTIONS", preflight("https://a.example"))
    assert r.status == 200 and r.one(ACAO) == "*", r.headers


@pytest.mark.parametrize("proto", PROTOS)
def test_actual_request(gw, proto):
    p, _ = gw
    # the backend's own CORS fields give way to the filter's; its other fields stay
    r = curl(p.port, "/c/get", proto, headers={
        "Origin": "https://www.bar.com",
        "X-Echo-Set-Header": "Access-Control-Allow-Origin: https://evil.com, X-Other: kept"})
    assert r.status == 200, r.headers
    assert r.all(ACAO) == ["https://www.bar.com"]
    assert r.one(ACAC) == "true"
    assert r.one(ACEH) == "x-header-3, x-header-4"
    assert r.one(ACAM) is None and r.one(ACMA) is None
    assert r.one("x-other") == "kept"
    assert "Origin" in r.all("vary")
    assert json.loads(r.body)["path"] == "/c/get"
    r = curl(p.port, "/any", proto, "PUT", headers={"Origin": "https://foobar.com:12345"})
    assert r.status == 200 and r.one(ACAO) == "*" and r.one(ACAC) is None, r.headers
    r = curl(p.port, "/star", proto, headers={"Origin": "https://other.foo.com"})
    assert r.one(ACAO) == "https://other.foo.com" and r.one(ACAC) == "true", r.headers


@pytest.mark.parametrize("proto", PROTOS)
def test_no_cors_fields_without_allowed_origin(gw, proto):
    p, _ = gw
    # no Origin at all
    r = curl(p.port, "/c", proto)
    assert r.status == 200 and r.cors_fields() == [], r.headers
    assert "Origin" in r.all("vary")
    # an origin not allowed: the filter adds nothing (the backend's own fields pass, as Envoy does)
    r = curl(p.port, "/c", proto, headers={"Origin": "https://foobar.com"})
    assert r.status == 200 and r.cors_fields() == [], r.headers
    # OPTIONS without Access-Control-Request-Method is not a preflight: the backend answers
    r = curl(p.port, "/c/opt", proto, "OPTIONS", headers={"Origin": "https://www.foo.com"})
    assert r.status == 200 and json.loads(r.body)["method"] == "OPTIONS", r.headers
    assert r.one(ACAO) == "https://www.foo.com"
    # a rule without the filter
    r = curl(p.port, "/plain", proto, "OPTIONS", preflight("https://www.foo.com"))
    assert r.status == 200 and json.loads(r.body)["method"] == "OPTIONS"
    assert r.cors_fields() == [] and r.one("vary") is None, r.headers


def test_invalid_origin_rejects_route(gw):
    p, _ = gw
    r = curl(p.port, "/bad", "http1.1")
    assert r.status == 404, r.headers
    cfg = p.admin("/config")
    assert cfg.status == 200
    assert b'"type":"CORS"' in cfg.body
