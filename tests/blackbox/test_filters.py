"""HTTPRoute filters: header modifiers, redirects, URL rewrites, mirroring."""
import time
import uuid

from helpers import SLOW, backend, free_port, httproute, match, ref, rule


def hdr_filter(kind, set_=None, add=None, remove=None):
    body = {}
    if set_:
        body["set"] = [{"name": k, "value": v} for k, v in set_.items()]
    if add:
        body["add"] = [{"name": k, "value": v} for k, v in add.items()]
    if remove:
        body["remove"] = remove
    key = "requestHeaderModifier" if kind == "RequestHeaderModifier" else "responseHeaderModifier"
    return {"type": kind, key: body}


def test_request_header_modifier(env):
    a = env.echo("a")
    f = hdr_filter("RequestHeaderModifier", set_={"X-Set": "new"}, add={"X-Add": "added"},
                   remove=["X-Remove"])
    objs = backend("a", a.port) + [httproute("r", [rule([match("/")], [ref("a")], filters=[f])])]
    p = env.pylon(objs)
    r = p.get("/h", headers={"X-Set": "old", "x-add": "orig", "X-Remove": "gone", "X-Keep": "k"})
    assert r.status == 200, r
    h = r.json()["headers"]
    assert h.get("X-Set") == ["new"], h
    assert h.get("X-Add") == ["orig", "added"], h
    assert "X-Remove" not in h, h
    assert h.get("X-Keep") == ["k"], h
    # headers absent from the request: set and add both create them
    h = p.get("/h").json()["headers"]
    assert h.get("X-Set") == ["new"] and h.get("X-Add") == ["added"], h


def test_response_header_modifier(env):
    a = env.echo("a")
    f = hdr_filter("ResponseHeaderModifier", set_={"X-Resp-Set": "s"}, add={"X-Resp-Add": "a2"},
                   remove=["X-Echo-Pod", "X-Drop"])
    objs = backend("a", a.port) + [httproute("r", [rule([match("/")], [ref("a")], filters=[f])])]
    p = env.pylon(objs)
    r = p.get("/h", headers={"X-Echo-Set-Header": "X-Resp-Add: a1, X-Resp-Set: old, X-Drop: d"})
    assert r.status == 200, r
    assert r.header_all("X-Resp-Set") == ["s"], r.headers
    assert r.header_all("X-Resp-Add") == ["a1", "a2"], r.headers
    assert r.header("X-Echo-Pod") is None, r.headers
    assert r.header("X-Drop") is None, r.headers


def redirect(**kw):
    return {"type": "RequestRedirect", "requestRedirect": kw}


def test_request_redirect(env):
    objs = [httproute("r", [
        rule([match("/r1")], filters=[redirect(scheme="https", statusCode=301)]),
        rule([match("/r2")], filters=[redirect(hostname="other.example")]),
        rule([match("/r3")], filters=[redirect(path={"type": "ReplaceFullPath", "replaceFullPath": "/new"})]),
        rule([match("/r4")], filters=[redirect(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/p4"})]),
        rule([match("/r5")], filters=[redirect(scheme="https", port=8443)]),
        rule([match("/r6")], filters=[redirect(port=80)]),
    ])]
    p = env.pylon(objs)
    host = "redir.example"
    hp = f"{host}:{p.port}"
    cases = [
        ("/r1/x?q=1", 301, "https://redir.example/r1/x?q=1"),
        ("/r2", 302, f"http://other.example:{p.port}/r2"),
        ("/r3/deep?a=b", 302, f"http://redir.example:{p.port}/new?a=b"),
        ("/r4/a/b", 302, f"http://redir.example:{p.port}/p4/a/b"),
        ("/r4", 302, f"http://redir.example:{p.port}/p4"),
        ("/r5", 302, "https://redir.example:8443/r5"),
        ("/r6", 302, "http://redir.example/r6"),
    ]
    for path, status, loc in cases:
        r = p.get(path, host=hp)
        assert r.status == status, (path, r)
        assert r.header("Location") == loc, (path, r.headers)


def rewrite(**kw):
    return {"type": "URLRewrite", "urlRewrite": kw}


def test_url_rewrite(env):
    a = env.echo("a")
    objs = backend("a", a.port) + [httproute("r", [
        rule([match("/rw1")], [ref("a")],
             filters=[rewrite(path={"type": "ReplaceFullPath", "replaceFullPath": "/full"})]),
        rule([match("/rw2")], [ref("a")],
             filters=[rewrite(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"})]),
        rule([match("/rw3")], [ref("a")],
             filters=[rewrite(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"})]),
        rule([match("/rw4")], [ref("a")], filters=[rewrite(hostname="rewritten.example")]),
    ])]
    p = env.pylon(objs)
    cases = [
        ("/rw1/a?x=1", "/full?x=1"),
        ("/rw2/a/b", "/v2/a/b"),
        ("/rw2", "/v2"),
        ("/rw2/", "/v2/"),
        ("/rw3/a", "/a"),
        ("/rw3", "/"),
    ]
    for path, want in cases:
        r = p.get(path)
        assert r.status == 200, (path, r)
        assert r.json()["path"] == want, (path, r.json()["path"])
    r = p.get("/rw4/x", host="orig.example")
    assert r.json()["host"] == "rewritten.example", r.json()
    assert r.json()["path"] == "/rw4/x"


def test_request_mirror(env):
    main, mirror = env.echo("main"), env.echo("mirror")
    mf = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}
    objs = backend("main", main.port) + backend("mirror", mirror.port) + [
        httproute("r", [rule([match("/m")], [ref("main")], filters=[mf]),
                        rule([match("/plain")], [ref("main")])])]
    p = env.pylon(objs)
    before = mirror.stats()["requests"]
    marker = f"/m/{uuid.uuid4().hex}"
    r = p.get(marker)
    assert r.status == 200 and r.pod == "main", r
    deadline = time.monotonic() + 3 * SLOW
    while time.monotonic() < deadline:
        if marker in mirror.stats()["recent"]:
            break
        time.sleep(0.05)
    st = mirror.stats()
    assert marker in st["recent"], f"mirror never saw {marker}: {st}"
    assert marker in main.stats()["recent"]
    # unmirrored rule: the mirror sees nothing more
    p.get("/plain")
    time.sleep(0.3 * SLOW)
    assert mirror.stats()["requests"] == before + 1


def test_mirror_with_body_and_dead_mirror(env):
    """A mirrored POST still reaches the main backend whole; a mirror that is down changes nothing."""
    main, mirror = env.echo("main"), env.echo("mirror")
    mf = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}
    dead = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "dead", "port": 80}}}
    objs = (backend("main", main.port) + backend("mirror", mirror.port) + backend("dead", free_port())
            + [httproute("r", [rule([match("/body")], [ref("main")], filters=[mf]),
                               rule([match("/dead")], [ref("main")], filters=[dead])])])
    p = env.pylon(objs)
    r = p.get("/body", method="POST", body=b"x" * 100000)
    assert r.status == 200 and r.json()["body_bytes"] == 100000, r
    for _ in range(5):
        t = time.monotonic()
        r = p.get("/dead")
        assert r.status == 200 and r.pod == "main", r
        assert time.monotonic() - t < 1.0 * SLOW
