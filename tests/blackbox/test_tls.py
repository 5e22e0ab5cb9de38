"""TLS termination by SNI, misdirected requests, resumption, certificate
rotation, listener statuses for bad certificate refs, TLS passthrough by SNI,
TCPRoute and UDPRoute, and the seed article's three-listener Gateway."""
import json
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from helpers import (REPO, backend, free_port, httproute, listener, match, ref, rule, wait_until,
                     write_objects)
from tlsutil import (CA, TCPEcho, TLSEcho, UDPEcho, ca_configmap, free_udp_port, https_get,
                     https_listener, l4_backend, l4_route, peer_cn, tls_connect, tls_secret)


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path / "pki")


def _https_setup(env, ca, extra_objs=()):
    """HTTPS port with three listeners: a.example.com, *.example.com and a default (no hostname)."""
    e = env.echo("tls-pod")
    port = free_port()
    a = ca.issue("a.example.com")
    w = ca.issue("*.example.com", key="rsa")
    d = ca.issue("default.test")
    objs = [tls_secret("a", *a), tls_secret("wild", *w), tls_secret("dflt", *d)] + backend("echo", e.port) + [
        httproute("r", [rule([match("/")], [ref("echo")])])] + list(extra_objs)
    listeners = [https_listener("a", port, ["a"], hostname="a.example.com"),
                 https_listener("wild", port, ["wild"], hostname="*.example.com"),
                 https_listener("dflt", port, ["dflt"])]
    p = env.pylon(objs, listeners=listeners)
    return p, port


def test_sni_selects_certificate(env, ca):
    p, port = _https_setup(env, ca)
    for sni, cn in [("a.example.com", "a.example.com"), ("b.example.com", "*.example.com"),
                    ("x.y.example.com", "*.example.com"), ("other.org", "default.test")]:
        with tls_connect(port, sni, ca.crt) as s:
            assert peer_cn(s) == cn, sni
            assert s.version() in ("TLSv1.2", "TLSv1.3")
            assert s.selected_alpn_protocol() is None
    # no SNI at all: the default certificate
    with tls_connect(port, None, ca.crt) as s:
        assert peer_cn(s) == "default.test"
    # ALPN: http/1.1 when that is all the client offers; h2 preferred once the HTTP/2 engine is on
    for offer, want in ((["http/1.1"], ("http/1.1",)), (["h2", "http/1.1"], ("h2", "http/1.1")),
                        (["spdy/3"], (None,))):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(str(ca.crt))
        ctx.set_alpn_protocols(offer)
        with tls_connect(port, "a.example.com", ctx=ctx) as s:
            assert s.selected_alpn_protocol() in want, offer


def test_https_requests_and_421(env, ca):
    p, port = _https_setup(env, ca)
    with tls_connect(port, "a.example.com", ca.crt) as s:
        st, h, body = https_get(s, "a.example.com")
        assert st == 200, body
        j = json.loads(body)
        assert j["pod"] == "tls-pod"
        assert j["headers"].get("X-Forwarded-Proto") == ["https"], j
        # keep-alive on the same TLS connection
        st, h, body = https_get(s, "a.example.com:%d" % port)
        assert st == 200
        # Host of another listener than the SNI's: 421 Misdirected Request
        st, h, body = https_get(s, "b.example.com")
        assert st == 421
    # the wildcard listener's connection may serve any of its names, not a.example.com's
    with tls_connect(port, "b.example.com", ca.crt) as s:
        assert https_get(s, "c.example.com")[0] == 200
        assert https_get(s, "a.example.com")[0] == 421


def test_real_clients_curl_and_s_client(env, ca):
    p, port = _https_setup(env, ca)
    for host, want in [("a.example.com", "a.example.com"), ("zz.example.com", "*.example.com")]:
        r = subprocess.run(["curl", "-sS", "--cacert", str(ca.crt), "--resolve", f"{host}:{port}:127.0.0.1",
                            "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}",
                            f"https://{host}:{port}/x"], capture_output=True, text=True, timeout=20)
        assert r.stdout.strip() == "200 0", (r.stdout, r.stderr)
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", host,
                            "-CAfile", str(ca.crt), "-verify_return_error"],
                           input="", capture_output=True, text=True, timeout=20)
        assert re.search(r"subject=CN ?= ?" + re.escape(want), r.stdout), r.stdout[-2000:]
        assert "Verify return code: 0 (ok)" in r.stdout


def test_tls12_and_resumption(env, ca):
    p, port = _https_setup(env, ca)
    for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(str(ca.crt))
        ctx.minimum_version = ctx.maximum_version = ver
        with tls_connect(port, "a.example.com", ctx=ctx) as s:
            assert https_get(s, "a.example.com")[0] == 200   # TLS 1.3 tickets arrive after the handshake
            sess = s.session
            assert not s.session_reused
        with tls_connect(port, "a.example.com", ctx=ctx, session=sess) as s2:
            assert s2.session_reused, ver
            assert https_get(s2, "a.example.com")[0] == 200
    # TLS 1.1 and older are refused
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        return
    with pytest.raises((ssl.SSLError, OSError)):
        with tls_connect(port, "a.example.com", ctx=ctx):
            pass


def test_certificate_rotation_keeps_connections(env, ca):
    p, port = _https_setup(env, ca)
    old = tls_connect(port, "a.example.com", ca.crt)
    assert https_get(old, "a.example.com")[0] == 200
    gen = p.generation()
    a2 = ca.issue("a.example.com", sans=["a.example.com", "rotated.a.example.com"])
    # rewrite the Secret in place (the file holding it is 50-objects.yaml)
    objs = [json.loads(d) for d in (p.dir / "50-objects.yaml").read_text().split("\n---\n")]
    objs = [tls_secret("a", *a2) if o["kind"] == "Secret" and o["metadata"]["name"] == "a" else o for o in objs]
    write_objects(p.dir / "50-objects.yaml", objs)
    wait_until(lambda: p.generation() > gen, 10, what="new generation")

    def new_cert():
        with tls_connect(port, "a.example.com", ca.crt) as s:
            sans = [v for k, v in s.getpeercert().get("subjectAltName", ()) if k == "DNS"]
            return "rotated.a.example.com" in sans
    wait_until(new_cert, 10, what="rotated certificate served")
    # the connection made before the rotation still works on its old session
    assert https_get(old, "a.example.com")[0] == 200
    old.close()


def test_invalid_certificate_refs_status(env, ca, tmp_path):
    mdir = tmp_path / "m"
    mdir.mkdir()
    a = ca.issue("a.example.com")
    other = ca.issue("other.example.com")
    from helpers import gatewayclass, gateway
    objs = [gatewayclass(), gateway([
        https_listener("missing", 8443, ["nope"]),
        https_listener("mismatch", 8444, ["mm"]),
        https_listener("xns", 8445, ["a"]),
        https_listener("good", 8446, ["a"]),
    ]), tls_secret("a", *a),
        # certificate of one key pair, key of another
        {**tls_secret("mm", a[0], other[1])}]
    objs[1]["spec"]["listeners"][2]["tls"]["certificateRefs"][0]["namespace"] = "certs"
    objs.append(tls_secret("a", *a, ns="certs"))
    write_objects(mdir / "all.yaml", objs)
    r = env.check(mdir)
    ls = _listener_conditions(r.stdout)
    assert ls["missing"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert ls["missing"]["Programmed"][0] == "False"
    assert ls["mismatch"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert ls["xns"]["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert ls["good"]["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert ls["good"]["Programmed"] == ("True", "Programmed")


def test_client_certificate_validation(env, ca, tmp_path):
    e = env.echo("mtls")
    port = free_port()
    srv = ca.issue("m.example.com")
    client_ca = CA(tmp_path / "clientpki", name="client-ca")
    good = client_ca.issue("client-1", client=True)
    stranger = CA(tmp_path / "otherpki", name="other-ca").issue("client-2", client=True)
    gwl = [https_listener("m", port, ["m"], hostname="m.example.com")]
    objs = [tls_secret("m", *srv), ca_configmap("client-ca", client_ca.crt)] + backend("echo", e.port) + [
        httproute("r", [rule([match("/")], [ref("echo")])])]
    p = env.pylon(objs, listeners=gwl, wait=False)
    # spec.tls.frontend on the Gateway (written by env.pylon in 00-gateway.yaml)
    gwf = p.dir / "00-gateway.yaml"
    docs = [json.loads(d) for d in gwf.read_text().split("\n---\n")]
    docs[1]["spec"]["tls"] = {"frontend": {"default": {"validation": {
        "caCertificateRefs": [{"kind": "ConfigMap", "group": "", "name": "client-ca"}]}}}}
    write_objects(gwf, docs)
    p.wait_ready()

    def ok_with(cert):
        with tls_connect(port, "m.example.com", ca.crt, cert=cert) as s:
            return https_get(s, "m.example.com")[0]
    wait_until(lambda: _refused(lambda: ok_with(None)), 10, what="client certificate required")
    assert ok_with(good) == 200
    assert _refused(lambda: ok_with(stranger))


def _listener_conditions(yaml_text):
    """{listener: {type: (status, reason)}} from `pylon check` YAML (keys sorted: conditions before name)."""
    gw = [d for d in yaml_text.split("\n---") if re.search(r"^kind: Gateway$", d, re.M)][0]
    out = {}
    for chunk in gw.split("- attachedRoutes:")[1:]:
        name = re.search(r"^\s*name: \"?([\w.-]+)\"?$", chunk, re.M).group(1)
        conds = re.findall(r"reason: \"?(\w+)\"?\n\s*status: \"?(\w+)\"?\n\s*type: \"?(\w+)\"?", chunk)
        out[name] = {t: (st, rs) for rs, st, t in conds}
    return out


def _refused(fn):
    try:
        fn()
    except (ssl.SSLError, OSError, ConnectionError):
        return True
    return False


def test_passthrough_by_sni(env, ca):
    port = free_port()
    foo = TLSEcho("foo", *ca.issue("foo.example.com"))
    wild = TLSEcho("wild", *ca.issue("any.example.com"))
    try:
        objs = l4_backend("foo", foo.port, svc_port=443) + l4_backend("wild", wild.port, svc_port=443) + [
            l4_route("TLSRoute", "foo", [("foo", 443, None)], hostnames=["foo.example.com"]),
            l4_route("TLSRoute", "wild", [("wild", 443, None)], hostnames=["*.example.com"])]
        p = env.pylon(objs, listeners=[https_listener("tls", port, [], protocol="TLS", mode="Passthrough")])
        for sni, name, cn in [("foo.example.com", "foo", "foo.example.com"),
                              ("bar.example.com", "wild", "any.example.com")]:
            with tls_connect(port, sni, ca.crt) as s:
                assert peer_cn(s) == cn      # the backend's own certificate
                s.sendall(b"hello\n")
                assert s.recv(100) == name.encode() + b":hello\n"
        assert foo.snis == ["foo.example.com"]
        # unknown SNI, no SNI, and not TLS at all: refused promptly, no hang
        for sni in ("nobody.org", None):
            t0 = time.monotonic()
            with pytest.raises((ssl.SSLError, OSError)):
                with tls_connect(port, sni, ca.crt, timeout=5):
                    pass
            assert time.monotonic() - t0 < 2, sni
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass            # closed with the peeked bytes unread: the kernel resets
        assert time.monotonic() - t0 < 2
        s.close()
    finally:
        foo.stop()
        wild.stop()


def test_tcproute_echo_and_half_close(env):
    port = free_port()
    a, b = TCPEcho(b"a:"), TCPEcho(b"b:")
    try:
        objs = l4_backend("a", a.port, svc_port=7000) + l4_backend("b", b.port, svc_port=7000) + [
            l4_route("TCPRoute", "t", [("a", 7000, 1), ("b", 7000, 1)])]
        p = env.pylon(objs, listeners=[listener("tcp", port, protocol="TCP")])
        seen = set()
        for i in range(4):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"ping%d" % i)
            s.shutdown(socket.SHUT_WR)          # half-close: the reply must still arrive
            data = b""
            while True:
                d = s.recv(1000)
                if not d:
                    break
                data += d
            s.close()
            assert data.endswith(b"ping%dbye" % i), data
            seen.add(data[:2])
        assert seen == {b"a:", b"b:"}, "weighted backends: both get streams"
        # a bulk transfer both ways
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        blob = bytes(range(256)) * 4096
        env.thread(lambda: (s.sendall(blob), s.shutdown(socket.SHUT_WR)))
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        assert data[2:].replace(b"a:", b"").replace(b"b:", b"")[:len(blob)] == blob[:len(blob)] or len(data) >= len(blob)
    finally:
        a.stop()
        b.stop()


def test_udproute_echo(env):
    tcp_port = free_port()
    uport = free_udp_port()
    u = UDPEcho(b"u:")
    try:
        objs = l4_backend("u", u.port, protocol="UDP", svc_port=5353) + [
            l4_route("UDPRoute", "u", [("u", 5353, None)], section="udp")]
        p = env.pylon(objs, listeners=[listener("http", tcp_port),
                                       {"name": "udp", "protocol": "UDP", "port": uport}])
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(0.5)

        def echo():
            c.sendto(b"dgram", ("127.0.0.1", uport))
            try:
                d, _ = c.recvfrom(100)
            except socket.timeout:
                return False
            return d == b"u:dgram"
        wait_until(echo, 10, what="UDP echo through the UDPRoute")
        for i in range(5):
            c.sendto(b"n%d" % i, ("127.0.0.1", uport))
            assert c.recvfrom(100)[0] == b"u:n%d" % i
        c.close()
    finally:
        u.stop()


def test_seed_001_three_listeners(env, ca, tmp_path):
    """examples/seed-001/ as shipped, with its ports swapped for free ones and demo certificates made here."""
    ex = REPO / "examples" / "seed-001"
    mdir = tmp_path / "seed"
    shutil.copytree(ex, mdir)
    web = env.echo("www-pod")
    app = env.echo("foo-pod")
    tlsb = TLSEcho("backend", *ca.issue("foo.example.com"))
    try:
        ports = {"8080": free_port(), "8443": free_port(), "6443": free_port(),
                 "9081": web.port, "9082": app.port, "9443": tlsb.port}
        wc = ca.issue("*.example.com")
        # the example ships a demo certificate; use one from this test's CA instead
        (mdir / "15-secret.yaml").unlink()
        for f in mdir.iterdir():
            if f.suffix != ".yaml":
                continue
            text = f.read_text()
            text = re.sub(r"\b(8080|8443|6443|9081|9082|9443)\b", lambda m: str(ports[m.group(1)]), text)
            f.write_text(text)
        write_objects(mdir / "15-secret.yaml", [tls_secret("eg-https", *wc)])
        p = env.pylon(gateway_obj=False, mdir=mdir)
        p.port = ports["8080"]
        p.wait_ready()
        r = p.get("/", host="www.example.com")
        assert r.status == 200 and r.pod == "www-pod", r
        with tls_connect(ports["8443"], "foo.example.com", ca.crt) as s:
            assert peer_cn(s) == "*.example.com"
            st, _, body = https_get(s, "foo.example.com")
            assert st == 200 and json.loads(body)["pod"] == "foo-pod"
        with tls_connect(ports["6443"], "foo.example.com", ca.crt) as s:
            assert peer_cn(s) == "foo.example.com"
            s.sendall(b"hi\n")
            assert s.recv(100) == b"backend:hi\n"
        with pytest.raises((ssl.SSLError, OSError)):
            with tls_connect(ports["6443"], "bar.example.com", ca.crt):
                pass
    finally:
        tlsb.stop()
