"""BackendTLSPolicy: TLS from pylon to backends with SNI, verification against a
CA from a ConfigMap, hostname and subjectAltNames checks failing closed (502
and a log line), pooled TLS connections, and the policy statuses."""
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import Client, backend, gateway, gatewayclass, httproute, match, ref, rule, wait_until, write_objects
from tlsutil import CA, ca_configmap

GWAPI = "gateway.networking.k8s.io/v1"


class TLSHTTP:
    """An HTTPS/1.1 backend (Python ssl) answering "<name>:<path>"; records SNIs and connections."""

    def __init__(self, name, crt, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        self.snis = []
        self.conns = 0
        self.paths = []
        ctx.sni_callback = lambda s, n, c: self.snis.append(n)
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                outer.conns += 1
                super().setup()

            def do_GET(self):
                outer.paths.append(self.path)
                body = f"{name}:{self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def policy(name, svc, hostname, ca_refs=None, well_known=None, sans=None, section=None, created=None):
    v = {"hostname": hostname}
    if ca_refs is not None:
        v["caCertificateRefs"] = [{"group": "", "kind": k, "name": n} for k, n in ca_refs]
    if well_known:
        v["wellKnownCACertificates"] = well_known
    if sans:
        v["subjectAltNames"] = [{"type": "URI", "uri": s} if ":" in s else {"type": "Hostname", "hostname": s}
                                for s in sans]
    tr = {"group": "", "kind": "Service", "name": svc}
    if section:
        tr["sectionName"] = section
    md = {"name": name, "namespace": "default"}
    if created:
        md["creationTimestamp"] = created
    return {"apiVersion": GWAPI, "kind": "BackendTLSPolicy", "metadata": md,
            "spec": {"targetRefs": [tr], "validation": v}}


@pytest.fixture
def pki(tmp_path):
    return CA(tmp_path / "pki"), CA(tmp_path / "pki2", name="stranger-ca")


def test_backend_tls_verification(env, pki):
    ca, stranger = pki
    good = TLSHTTP("good", *ca.issue("secure.example.com", sans=["secure.example.com", "alt.example.com"]))
    rogue = TLSHTTP("rogue", *stranger.issue("secure.example.com"))
    try:
        svcs = {"ok": good, "badhost": good, "badca": rogue, "san": good, "sanbad": good, "plain": None}
        objs = [ca_configmap("ca", ca.crt)]
        for s, b in svcs.items():
            if b:
                objs += backend(s, b.port)
        objs += [
            policy("ok", "ok", "secure.example.com", ca_refs=[("ConfigMap", "ca")]),
            policy("badhost", "badhost", "other.example.com", ca_refs=[("ConfigMap", "ca")]),
            policy("badca", "badca", "secure.example.com", ca_refs=[("ConfigMap", "ca")]),
            policy("san", "san", "secure.example.com", ca_refs=[("ConfigMap", "ca")], sans=["alt.example.com"]),
            policy("sanbad", "sanbad", "secure.example.com", ca_refs=[("ConfigMap", "ca")],
                   sans=["nope.example.com", "spiffe://cluster.local/ns/default/sa/x"]),
            httproute("r", [rule([match(f"/{s}")], [ref(s)]) for s in svcs if svcs[s]]),
        ]
        p = env.pylon(objs)
        r = p.get("/ok/x")
        assert r.status == 200, r
        assert r.body == b"good:/ok/x"
        assert "secure.example.com" in good.snis
        # keep-alive: the TLS upstream connection is pooled and reused
        c = Client(p.port)
        n0 = good.conns
        for i in range(5):
            r = c.get(f"/ok/{i}")
            assert r.status == 200 and r.body == f"good:/ok/{i}".encode(), r
        c.close()
        assert good.conns - n0 <= 2, good.conns - n0
        r = p.get("/san/y")
        assert r.status == 200 and r.body == b"good:/san/y", r
        for path, what in (("/badhost", "hostname"), ("/badca", "unable to get local issuer"),
                           ("/sanbad", "subjectAltNames")):
            r = p.get(path)
            assert r.status == 502, (path, r)
            assert b"good:" not in r.body and b"rogue:" not in r.body
            cluster = f"default/{path[1:]}:80"
            wait_until(lambda: re.search(rf"cluster {re.escape(cluster)}: TLS to backend .*{what}", p.log()),
                       5, what=f"verify log line for {path}")
        # failing closed: nothing of those requests reached a backend
        assert rogue.paths == []
        assert not [x for x in good.paths if x.startswith(("/badhost", "/sanbad"))], good.paths
    finally:
        good.stop()
        rogue.stop()


def _policy_conditions(yaml_text):
    """{policy name: {type: (status, reason)}} from `pylon check` YAML."""
    out = {}
    for d in yaml_text.split("\n---"):
        if not re.search(r"^kind: BackendTLSPolicy$", d, re.M):
            continue
        name = re.search(r"^  name: \"?([\w.-]+)\"?$", d, re.M).group(1)
        conds = re.findall(r"reason: \"?(\w+)\"?\n\s*status: \"?(\w+)\"?\n\s*type: \"?(\w+)\"?", d)
        out[name] = {t: (st, rs) for rs, st, t in conds}
        out[name]["_gateway"] = "name: gw" in d and "kind: Gateway" in d
    return out


def test_backend_tls_policy_status(env, pki, tmp_path):
    ca, _ = pki
    mdir = tmp_path / "m"
    mdir.mkdir()
    from helpers import listener
    objs = [gatewayclass(), gateway([listener("http", 8080)]), ca_configmap("ca", ca.crt),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "junk", "namespace": "default"},
             "data": {"ca.crt": "not a certificate"}}]
    for s in ("a", "b", "c", "d"):
        objs += backend(s, 9)
    objs += [
        policy("old", "a", "a.example.com", ca_refs=[("ConfigMap", "ca")], created="2024-01-01T00:00:00Z"),
        policy("new", "a", "a.example.com", ca_refs=[("ConfigMap", "ca")], created="2025-01-01T00:00:00Z"),
        policy("badref", "b", "b.example.com", ca_refs=[("ConfigMap", "junk")]),
        policy("badkind", "c", "c.example.com", ca_refs=[("Secret", "ca"), ("ConfigMap", "ca")]),
        policy("system", "d", "d.example.com", well_known="System"),
        policy("unused", "nosuch", "x.example.com", well_known="System"),
        httproute("r", [rule([match(f"/{s}")], [ref(s)]) for s in ("a", "b", "c", "d")]),
    ]
    write_objects(mdir / "all.yaml", objs)
    r = env.check(mdir)
    pc = _policy_conditions(r.stdout)
    assert pc["old"]["Accepted"] == ("True", "Accepted"), r.stdout
    assert pc["old"]["_gateway"]
    assert pc["new"]["Accepted"] == ("False", "Conflicted")
    assert pc["badref"]["Accepted"] == ("False", "NoValidCACertificate")
    assert pc["badref"]["ResolvedRefs"] == ("False", "InvalidCACertificateRef")
    assert pc["badkind"]["Accepted"] == ("True", "Accepted")
    assert pc["badkind"]["ResolvedRefs"] == ("False", "InvalidKind")
    assert pc["system"]["Accepted"] == ("True", "Accepted")
    assert pc["system"]["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert "unused" not in pc          # no Gateway uses its Service: no ancestor to report


def test_backend_tls_unusable_policy_fails_closed(env, pki):
    ca, _ = pki
    good = TLSHTTP("good", *ca.issue("secure.example.com"))
    try:
        objs = backend("s", good.port) + [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "junk", "namespace": "default"},
             "data": {"ca.crt": "garbage"}},
            policy("p", "s", "secure.example.com", ca_refs=[("ConfigMap", "junk")]),
            httproute("r", [rule([match("/")], [ref("s")])])]
        p = env.pylon(objs)
        r = p.get("/")
        assert r.status >= 500, r
        assert good.paths == []
        assert "BackendTLSPolicy default/p is unusable" in p.log()
    finally:
        good.stop()
