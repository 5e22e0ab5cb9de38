"""Routing: the quickstart, matches and their precedence, hostnames, weights,
invalid and empty backends."""
import re
import shutil
from collections import Counter

from helpers import (REPO, Client, backend, fetch, free_port, httproute, listener, match, ref,
                     rule, service)


def test_quickstart_example(env, tmp_path):
    """examples/quickstart/ as shipped, with its fixed ports swapped for free ones."""
    left, right = env.echo("left-abc"), env.echo("right-def")
    gw_port = free_port()
    mdir = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", mdir)
    subst = {"8080": gw_port, "9081": left.port, "9082": right.port}
    for f in mdir.iterdir():
        text = f.read_text()
        text = re.sub(r"\b(8080|9081|9082)\b", lambda m: str(subst[m.group(1)]), text)
        f.write_text(text)
    p = env.pylon(gateway_obj=False, mdir=mdir)
    p.port = gw_port
    p.wait_ready()

    r = p.get("/left")
    assert r.status == 200, r
    assert r.json()["pod"] == "left-abc"
    assert r.json()["path"] == "/left"
    r = p.get("/right/deeper?x=1")
    assert r.status == 200 and r.json()["pod"] == "right-def", r
    assert r.json()["path"] == "/right/deeper?x=1"
    assert p.get("/").status == 404
    assert p.get("/leftover").status == 404, "PathPrefix must match whole path elements"
    assert p.get("/nowhere").status == 404


def test_seed_003_examples(env, tmp_path):
    """examples/seed-003/: the article's v1alpha1 objects as written, the listener's port 80 and
    the backends' ports swapped for free ones; and the 2021 v1alpha1 schema refused with a reason."""
    cases = {"getting-started": ("9091", {"/": 200, "/anything/x?y=1": 200}),
             "concepts": ("9092", {"/api": 200, "/api/users": 200, "/": 404, "/apis": 404})}
    for sub, (be_port, expect) in cases.items():
        be = env.echo(sub)
        gw_port = free_port()
        mdir = tmp_path / sub
        shutil.copytree(REPO / "examples" / "seed-003" / sub, mdir)
        gw = mdir / "10-gateway.yaml"
        assert "v1alpha1" in gw.read_text()
        gw.write_text(re.sub(r"\bport: 80\b", f"port: {gw_port}", gw.read_text()))
        b = mdir / "30-backends.yaml"
        b.write_text(b.read_text().replace(be_port, str(be.port)))
        p = env.pylon(gateway_obj=False, mdir=mdir)
        p.port = gw_port
        p.wait_ready()
        for path, code in expect.items():
            r = p.get(path)
            assert r.status == code, (sub, path, r)
            if code == 200:
                assert r.pod == sub and r.json()["path"] == path, (sub, path, r)
        p.stop()

    old = tmp_path / "old-alpha"
    shutil.copytree(REPO / "examples" / "seed-003" / "getting-started", old)
    (old / "20-route.yaml").write_text("""apiVersion: gateway.networking.k8s.io/v1alpha1
kind: HTTPRoute
metadata:
  name: old
spec:
  gateways:
    allow: All
  rules:
  - forwardTo:
    - serviceName: example-service
      port: 80
""")
    r = env.check(old)
    assert r.returncode != 0, r
    assert "spec.gateways is of the v1alpha1 schema of 2021" in r.stdout + r.stderr, r



def test_path_exact_prefix_regex(env):
    a, b, c = env.echo("exact"), env.echo("prefix"), env.echo("regex")
    objs = backend("a", a.port) + backend("b", b.port) + backend("c", c.port) + [
        httproute("r", [
            rule([match("/exact", "Exact")], [ref("a")]),
            rule([match("/prefix", "PathPrefix")], [ref("b")]),
            rule([match("/re/[0-9]+", "RegularExpression")], [ref("c")]),
        ])]
    p = env.pylon(objs)
    expect = {
        "/exact": "exact", "/exact/": None, "/exact/x": None, "/exactly": None,
        "/exact?q=1": "exact",
        "/prefix": "prefix", "/prefix/": "prefix", "/prefix/a/b": "prefix", "/prefixes": None,
        "/prefix?x": "prefix",
        "/re/123": "regex", "/re/abc": None, "/re/123/x": None, "/re/": None,
    }
    for path, pod in expect.items():
        r = p.get(path)
        if pod is None:
            assert r.status == 404, (path, r)
        else:
            assert r.status == 200 and r.pod == pod, (path, r)


def test_match_precedence(env):
    """Spec order: exact path > longest prefix > method > most headers > most query params."""
    pods = ["base", "hdr", "long", "post", "query", "two-hdr", "exact"]
    e = {n: env.echo(n) for n in pods}
    objs = []
    for n in pods:
        objs += backend(n, e[n].port)
    objs.append(httproute("prec", [
        rule([match("/p")], [ref("base")]),
        rule([match("/p", headers={"x-v": "1"})], [ref("hdr")]),
        rule([match("/p/long")], [ref("long")]),
        rule([match("/p", method="POST")], [ref("post")]),
        rule([match("/p", query={"q": "1"})], [ref("query")]),
        rule([match("/p", headers={"x-v": "1", "x-w": ("RegularExpression", "w[0-9]+")})],
             [ref("two-hdr")]),
        rule([match("/p/long/exact", "Exact")], [ref("exact")]),
    ]))
    p = env.pylon(objs)
    cases = [
        ("GET", "/p", {}, "base"),
        ("GET", "/p/x", {}, "base"),
        ("GET", "/p", {"X-V": "1"}, "hdr"),                 # header names: any case
        ("GET", "/p", {"x-v": "V1"}, "base"),               # values: case-sensitive
        ("GET", "/p", {"x-v": "1", "x-w": "w42"}, "two-hdr"),
        ("GET", "/p", {"x-v": "1", "x-w": "nope"}, "hdr"),
        ("GET", "/p/long/x", {"x-v": "1"}, "long"),         # longer prefix beats headers
        ("GET", "/p/long/exact", {"x-v": "1"}, "exact"),    # exact beats everything
        ("POST", "/p", {"x-v": "1"}, "post"),               # method beats headers
        ("GET", "/p?q=1", {}, "query"),
        ("GET", "/p?q=2", {}, "base"),
        ("GET", "/p?a=b&q=1", {}, "query"),
        ("GET", "/p?q=1", {"x-v": "1"}, "hdr"),             # headers beat query params
    ]
    for method, path, hdrs, pod in cases:
        r = p.get(path, method=method, headers=hdrs, body=b"" if method == "POST" else None)
        assert r.status == 200 and r.pod == pod, (method, path, hdrs, pod, r)


def test_rule_order_ties_and_multiple_matches(env):
    """Within a route, ties go to the earlier rule; a rule's matches are ORed."""
    a, b = env.echo("first"), env.echo("second")
    objs = backend("a", a.port) + backend("b", b.port) + [
        httproute("r", [
            rule([match("/t"), match("/alt", "Exact")], [ref("a")]),
            rule([match("/t")], [ref("b")]),
        ])]
    p = env.pylon(objs)
    assert p.get("/t").pod == "first"
    assert p.get("/alt").pod == "first"
    assert p.get("/alt/x").status == 404


def test_hostnames_listeners_and_routes(env):
    ex, wild, anyh, rexact, rwild = (env.echo(n) for n in ("l-exact", "l-wild", "l-any", "r-exact", "r-wild"))
    port = free_port()
    listeners = [
        listener("wild", port, "*.example.com"),
        listener("exact", port, "api.example.com"),
        listener("any", port),
    ]
    objs = (backend("ex", ex.port) + backend("wild", wild.port) + backend("anyh", anyh.port)
            + backend("rexact", rexact.port) + backend("rwild", rwild.port) + [
                httproute("on-wild", [rule([match("/")], [ref("wild")])], section="wild"),
                httproute("on-exact", [rule([match("/")], [ref("ex")])], section="exact"),
                httproute("on-any", [rule([match("/")], [ref("anyh")])], section="any",
                          hostnames=["fallback.test"]),
                httproute("rt-exact", [rule([match("/")], [ref("rexact")])], section="any",
                          hostnames=["exact.test"]),
                httproute("rt-wild", [rule([match("/")], [ref("rwild")])], section="any",
                          hostnames=["*.test"]),
            ])
    p = env.pylon(objs, listeners=listeners)
    cases = {
        "api.example.com": "l-exact",
        f"api.example.com:{port}": "l-exact",
        "API.Example.COM": "l-exact",
        "www.example.com": "l-wild",
        "a.b.example.com": "l-wild",
        "fallback.test": "l-any",
        "exact.test": "r-exact",
        "other.test": "r-wild",
        "deep.other.test": "r-wild",
        "example.com": None,          # *.example.com does not match the bare domain
        "nothing.invalid": None,
        "test": None,
    }
    for host, pod in cases.items():
        r = p.get("/", host=host)
        if pod is None:
            assert r.status == 404, (host, r)
        else:
            assert r.status == 200 and r.pod == pod, (host, r)


def test_weights_1_2_7(env):
    e = [env.echo(n) for n in ("w1", "w2", "w7")]
    objs = backend("w1", e[0].port) + backend("w2", e[1].port) + backend("w7", e[2].port) + [
        httproute("w", [rule([match("/")], [ref("w1", weight=1), ref("w2", weight=2),
                                             ref("w7", weight=7)])])]
    p = env.pylon(objs, workers=2)
    counts = Counter()
    # spread over several connections so both workers take part
    for _ in range(10):
        c = Client(p.port)
        for _ in range(100):
            r = c.get("/w")
            assert r.status == 200, r
            counts[r.pod] += 1
        c.close()
    assert sum(counts.values()) == 1000
    for pod, share in (("w1", 10), ("w2", 20), ("w7", 70)):
        got = counts[pod] / 10
        assert abs(got - share) <= 5, f"{pod}: {got}% (want {share}±5), all: {dict(counts)}"


def test_weight_zero_gets_nothing(env):
    a, b = env.echo("zero"), env.echo("one")
    objs = backend("a", a.port) + backend("b", b.port) + [
        httproute("r", [rule([match("/")], [ref("a", weight=0), ref("b", weight=1)])])]
    p = env.pylon(objs)
    c = Client(p.port)
    pods = Counter(c.get("/").pod for _ in range(50))
    assert pods == {"one": 50}, pods


def test_invalid_backend_share_gets_500(env):
    a = env.echo("valid")
    objs = backend("a", a.port) + [
        httproute("r", [rule([match("/half")], [ref("a", weight=1), ref("missing", weight=1)]),
                        rule([match("/all")], [ref("missing")]),
                        rule([match("/kind")], [ref("a", kind="Unknown")])])]
    p = env.pylon(objs)
    c = Client(p.port)
    st = Counter()
    for _ in range(100):
        r = c.get("/half")
        st[r.status] += 1
        if r.status == 200:
            assert r.pod == "valid"
    assert set(st) == {200, 500}, st
    assert 40 <= st[500] <= 60, st
    assert p.get("/all").status == 500
    assert p.get("/kind").status == 500


def test_missing_endpoints_gets_503(env):
    objs = [service("empty"), service("notready")] + [
        httproute("r", [rule([match("/empty")], [ref("empty")]),
                        rule([match("/notready")], [ref("notready")])])]
    # an EndpointSlice for "notready" whose only endpoint is not ready
    objs += [{
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "notready-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "notready"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": free_port()}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": False}}]}]
    p = env.pylon(objs)
    assert p.get("/empty").status == 503
    assert p.get("/notready").status == 503


def test_unreachable_endpoint_gets_502_or_503(env):
    dead_port = free_port()
    objs = backend("dead", dead_port) + [httproute("r", [rule([match("/")], [ref("dead")])])]
    p = env.pylon(objs)
    r = p.get("/x")
    assert r.status in (502, 503), r


def test_endpoints_round_robin(env):
    """One Service, three endpoints: requests spread over all of them."""
    e = [env.echo(f"ep{i}") for i in range(3)]
    objs = backend("svc", *(x.port for x in e)) + [httproute("r", [rule([match("/")], [ref("svc")])])]
    p = env.pylon(objs)
    c = Client(p.port)
    pods = Counter(c.get("/").pod for _ in range(60))
    assert set(pods) == {"ep0", "ep1", "ep2"}, pods
    assert min(pods.values()) >= 10, pods


def test_no_route_matches_on_unknown_host_without_listener(env):
    a = env.echo("a")
    port = free_port()
    objs = backend("a", a.port) + [httproute("r", [rule([match("/")], [ref("a")])])]
    p = env.pylon(objs, listeners=[listener("only", port, "only.example")])
    assert p.get("/", host="only.example").status == 200
    assert p.get("/", host="other.example").status == 404
    assert fetch(p.port, "/", host="").status in (400, 404)
