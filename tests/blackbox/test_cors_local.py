"""HTTPRoute CORS filter on the responses pylon makes itself after a rule with
the filter matched (redirect, 5xx for a missing, unreachable or slow backend,
retries exhausted): they carry the CORS fields a proxied response would, so a
browser shows the page the status instead of a CORS error. Answers made before
routing (404 no route) carry none. HTTP/1.1 and HTTP/2 (h2c prior knowledge)."""
import pytest

from helpers import RawBackend, backend, free_port, httproute, match, ref, rule
from test_cors import ACAC, ACAO, ACEH, PROTOS, cors, curl

ALLOWED = "https://www.foo.com"
DENIED = "https://evil.example"


def redirect(**kw):
    return {"type": "RequestRedirect", "requestRedirect": kw}


@pytest.fixture
def gw(env):
    slow = RawBackend(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", delay=3)
    f = cors(allowOrigins=[ALLOWED], exposeHeaders=["x-e"], allowCredentials=True)
    closed = rule([match("/closed")], [ref("closed")], filters=[f])
    closed["retry"] = {"attempts": 2, "backoff": "1ms"}
    objs = backend("closed", free_port()) + backend("slow", slow.port) + [
        httproute("cors", [
            rule([match("/closed")], [ref("closed")], filters=[f]),
            closed | {"matches": [match("/retry")]},
            rule([match("/missing")], [ref("missing")], filters=[f]),
            rule([match("/slow")], [ref("slow")], filters=[f], timeouts={"request": "300ms"}),
            rule([match("/redir")], filters=[f, redirect(hostname="other.example", statusCode=302)]),
            rule([match("/plain")], [ref("closed")]),
        ]),
    ]
    try:
        yield env.pylon(objs)
    finally:
        slow.stop()


def assert_cors(r, origin):
    assert r.one(ACAO) == origin, r.headers
    assert r.one(ACAC) == "true" and r.one(ACEH) == "x-e", r.headers
    assert "Origin" in r.all("vary"), r.headers


@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("path,statuses", [
    ("/closed", (502, 503)),
    ("/retry", (502, 503)),
    ("/missing", (500,)),
    ("/slow", (504,)),
])
def test_local_error_carries_cors(gw, proto, path, statuses):
    r = curl(gw.port, path, proto, headers={"Origin": ALLOWED})
    assert r.status in statuses, (r.status, r.headers)
    assert_cors(r, ALLOWED)
    assert r.body.startswith(str(r.status).encode())
    # an origin the rule does not allow: no CORS fields, as on a proxied response
    r = curl(gw.port, path, proto, headers={"Origin": DENIED})
    assert r.status in statuses, (r.status, r.headers)
    assert r.cors_fields() == [], r.headers
    assert "Origin" in r.all("vary"), r.headers


@pytest.mark.parametrize("proto", PROTOS)
def test_redirect_carries_cors(gw, proto):
    r = curl(gw.port, "/redir/x", proto, headers={"Origin": ALLOWED})
    assert r.status == 302, r.headers
    assert r.one("location") == f"http://other.example:{gw.port}/redir/x", r.headers
    assert_cors(r, ALLOWED)
    r = curl(gw.port, "/redir/x", proto, headers={"Origin": DENIED})
    assert r.status == 302 and r.cors_fields() == [], r.headers


@pytest.mark.parametrize("proto", PROTOS)
def test_no_cors_before_routing_or_without_filter(gw, proto):
    # no route: answered before any rule matched
    r = curl(gw.port, "/nothing", proto, headers={"Origin": ALLOWED})
    assert r.status == 404, r.headers
    assert r.cors_fields() == [] and r.one("vary") is None, r.headers
    # a rule without the filter whose backend is unreachable
    r = curl(gw.port, "/plain", proto, headers={"Origin": ALLOWED})
    assert r.status in (502, 503), r.headers
    assert r.cors_fields() == [] and r.one("vary") is None, r.headers


@pytest.mark.parametrize("proto", PROTOS)
def test_preflight_unchanged(gw, proto):
    # a preflight's answer carries its own fields once, whether or not the backend is reachable
    r = curl(gw.port, "/closed", proto, "OPTIONS",
             headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"})
    assert r.status == 200, r.headers
    assert r.all(ACAO) == [ALLOWED] and len(r.all("vary")) == 1, r.headers
    r = curl(gw.port, "/closed", proto, "OPTIONS",
             headers={"Origin": DENIED, "Access-Control-Request-Method": "GET"})
    assert r.status == 403 and r.cors_fields() == [] and len(r.all("vary")) == 1, r.headers


def test_grpc_error_carries_cors(gw):
    # a gRPC request's local error is a trailers-only 200 with grpc-status: the same fields
    r = curl(gw.port, "/closed", "h2", "POST", headers={"Origin": ALLOWED, "Content-Type": "application/grpc"})
    assert r.status == 200 and r.one("grpc-status") == "14", r.headers
    assert_cors(r, ALLOWED)
