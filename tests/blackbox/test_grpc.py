"""gRPC through GRPCRoute: a Go gRPC echo server (h2c, tests/grpc) behind
pylon, called with a Go gRPC client over h2c prior knowledge. Covers unary
calls, method matching to different backends, header/trailer metadata both
ways, gRPC errors from the backend, and the gRPC errors pylon makes itself
when no route (UNIMPLEMENTED) or no backend (UNAVAILABLE) serves a call.

scripts/grpc-tools.sh builds the tools through the Go module proxy into
~/.cache/pylon/bin; without Go (or the network) these tests are skipped."""
import json
import select
import subprocess

import pytest

from helpers import GWAPI, REPO, SLOW, Proc, httproute, match, ref, rule

TOOLS_SCRIPT = REPO / "scripts" / "grpc-tools.sh"


@pytest.fixture(scope="module")
def tools():
    r = subprocess.run([str(TOOLS_SCRIPT)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"gRPC test tools unavailable: {r.stderr.strip()[-400:]}")
    return r.stdout.strip()


class GrpcServer(Proc):
    def __init__(self, tools, name, log, args=()):
        super().__init__(f"grpc {name}", [f"{tools}/grpc-echo-server", "-name", name, *args], log=log,
                         stdout_pipe=True)
        r, _, _ = select.select([self.p.stdout], [], [], 10 * SLOW)
        line = self.p.stdout.readline().decode(errors="replace").strip() if r else ""
        if not line.isdigit():
            self.stop()
            raise AssertionError(f"grpc-echo-server did not start ({line!r}): {self.log()}")
        self.port = int(line)


def grpc_server(env, tools, name, args=()):
    s = GrpcServer(tools, name, env._log("grpc-" + name), args)
    env.procs.append(s)
    return s


def h2c_backend(svc, port, app_protocol="kubernetes.io/h2c"):
    sp = {"name": "grpc", "port": 50051, "protocol": "TCP"}
    if app_protocol:
        sp["appProtocol"] = app_protocol
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": "default"},
         "spec": {"ports": [sp]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{svc}-0", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": svc}},
         "addressType": "IPv4",
         "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["127.0.0.1"]}]},
    ]


def grpcroute(name, rules, hostnames=None):
    spec = {"parentRefs": [{"name": "gw"}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": GWAPI, "kind": "GRPCRoute", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def gref(svc, weight=None):
    r = {"name": svc, "port": 50051}
    if weight is not None:
        r["weight"] = weight
    return r


def call(tools, port, method, md=(), data="hello", authority="grpc.example.com", size=0, parallel=1, stream=0):
    args = [f"{tools}/grpc-echo-client", "-addr", f"127.0.0.1:{port}", "-method", method, "-data", data,
            "-authority", authority, "-timeout", f"{10 * SLOW}s", "-size", str(size), "-parallel", str(parallel),
            "-stream", str(stream)]
    for kv in md:
        args += ["-md", kv]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    if out["reply"] and not size:
        out["body"] = json.loads(out["reply"])
    return out


@pytest.fixture
def grpc_env(env, tools):
    a = grpc_server(env, tools, "a")
    b = grpc_server(env, tools, "b")
    objs = h2c_backend("grpc-a", a.port) + h2c_backend("grpc-b", b.port, app_protocol=None) + [
        grpcroute("echo", [
            {"matches": [{"method": {"service": "echo.Echo", "method": "Say"}}], "backendRefs": [gref("grpc-a")],
             "filters": [{"type": "RequestHeaderModifier",
                          "requestHeaderModifier": {"add": [{"name": "x-added", "value": "by-pylon"}]}},
                         {"type": "ResponseHeaderModifier",
                          "responseHeaderModifier": {"set": [{"name": "x-resp", "value": "set"}]}}]},
            {"matches": [{"method": {"service": "echo.Echo", "method": "Other"}}], "backendRefs": [gref("grpc-b")]},
            {"matches": [{"method": {"type": "RegularExpression", "service": "admin\\..*"}}],
             "backendRefs": [gref("grpc-b")]},
            {"matches": [{"method": {"service": "broken.Svc"}}], "backendRefs": [gref("missing")]},
        ], hostnames=["grpc.example.com"]),
    ]
    p = env.pylon(objs)
    return p, a, b


def test_unary_call_and_method_routing(grpc_env, tools):
    p, _, _ = grpc_env
    r = call(tools, p.port, "/echo.Echo/Say", data="ping")
    assert r["code"] == 0, r
    assert r["body"]["server"] == "a" and r["body"]["method"] == "/echo.Echo/Say"
    assert r["body"]["payload"] == "ping"
    assert r["body"]["metadata"]["x-added"] == ["by-pylon"]          # RequestHeaderModifier
    assert r["header"]["x-resp"] == ["set"]                           # ResponseHeaderModifier
    # exact method to another backend (no appProtocol: inferred h2c for a GRPCRoute)
    r = call(tools, p.port, "/echo.Echo/Other")
    assert r["code"] == 0 and r["body"]["server"] == "b", r
    # service regular expression
    r = call(tools, p.port, "/admin.Users/List")
    assert r["code"] == 0 and r["body"]["server"] == "b" and r["body"]["method"] == "/admin.Users/List", r


def test_metadata_and_trailers_survive(grpc_env, tools):
    p, _, _ = grpc_env
    r = call(tools, p.port, "/echo.Echo/Say",
             md=["x-echo-header=h-value", "x-echo-trailer=t-value", "x-custom=c"])
    assert r["code"] == 0, r
    assert r["header"]["x-echo-header"] == ["h-value"]
    assert r["trailer"]["x-echo-trailer"] == ["t-value"]
    assert r["body"]["metadata"]["x-custom"] == ["c"]
    # an error status from the backend (trailers-only response) reaches the client as is
    r = call(tools, p.port, "/echo.Echo/Say", md=["x-want-code=7", "x-echo-trailer=t2"])
    assert r["code"] == 7 and r["message"] == "requested failure", r
    assert r["trailer"]["x-echo-trailer"] == ["t2"]


def test_many_calls_share_sessions(grpc_env, tools):
    p, _, _ = grpc_env
    for i in range(5):
        r = call(tools, p.port, "/echo.Echo/Say", data=f"n{i}" * 2000)
        assert r["code"] == 0 and r["body"]["payload"] == f"n{i}" * 2000, r
    # concurrent streams multiplexed on one client connection and the pooled backend sessions
    r = call(tools, p.port, "/echo.Echo/Say", parallel=150)
    assert r["code"] == 0 and r["ok"] == 150, r


def test_large_messages_flow_control(grpc_env, tools):
    """3 MB each way: more than every stream and connection window on both sides."""
    p, _, _ = grpc_env
    r = call(tools, p.port, "/echo.Echo/Say", size=3_000_000)
    assert r["code"] == 0, r
    n = int(r["reply"].split()[0])
    assert 3_000_000 < n < 3_100_000, r
    r = call(tools, p.port, "/echo.Echo/Say", size=1_000_000, parallel=8)
    assert r["code"] == 0 and r["ok"] == 8, r


def test_grpc_errors_made_by_pylon(grpc_env, tools):
    p, _, _ = grpc_env
    r = call(tools, p.port, "/echo.Echo/Unknown")                    # no route: UNIMPLEMENTED
    assert r["code"] == 12, r
    r = call(tools, p.port, "/echo.Echo/Say", authority="other.example.com")
    assert r["code"] == 12, r
    r = call(tools, p.port, "/broken.Svc/Call")                      # invalid backendRef: UNAVAILABLE
    assert r["code"] == 14, r
    # plain HTTP/1.1 on the same port still gets HTTP errors
    assert p.get("/echo.Echo/Unknown", host="grpc.example.com").status == 404


def test_backend_down_is_unavailable(env, tools):
    a = grpc_server(env, tools, "a")
    port = a.port
    a.stop()
    p = env.pylon(h2c_backend("grpc-a", port) + [grpcroute("echo", [{"backendRefs": [gref("grpc-a")]}])])
    r = call(tools, p.port, "/echo.Echo/Say")
    assert r["code"] == 14, r


def test_grpc_and_http_routes_share_a_listener(env, tools):
    a = grpc_server(env, tools, "a")
    e = env.echo("web")
    objs = h2c_backend("grpc-a", a.port) + [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-0", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": e.port, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["127.0.0.1"]}]},
        grpcroute("g", [{"matches": [{"method": {"service": "echo.Echo"}}], "backendRefs": [gref("grpc-a")]}]),
        httproute("h", [rule([match("/")], [ref("web")])]),
    ]
    p = env.pylon(objs)
    r = call(tools, p.port, "/echo.Echo/Say")
    assert r["code"] == 0 and r["body"]["server"] == "a", r
    assert p.get("/page").status == 200
