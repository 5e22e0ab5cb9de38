"""The Gateway's backend client certificate (spec.tls.backend.clientCertificateRef,
GatewayBackendClientCertificate): presented on TLS connections to backends with a
BackendTLSPolicy; an unusable reference gives the Gateway ResolvedRefs=False."""
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import (backend, fetch, free_port, gateway, gatewayclass, httproute, listener, match, ref, rule,
                     write_objects)
from tlsutil import CA, ca_configmap, tls_secret

GWAPI = "gateway.networking.k8s.io/v1"


class MTLSHTTP:
    """An HTTPS backend that requires a client certificate from ca and answers with its CN."""

    def __init__(self, crt, key, ca):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        ctx.load_verify_locations(str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.handshake_errors = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                cn = ""
                for rdn in self.connection.getpeercert()["subject"]:
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
                body = f"client={cn}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class S(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                outer.handshake_errors += 1

        self.srv = S(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def _policy(svc):
    return {"apiVersion": GWAPI, "kind": "BackendTLSPolicy", "metadata": {"name": svc, "namespace": "default"},
            "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": svc}],
                     "validation": {"hostname": "secure.example.com",
                                    "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}]}}}


def _gw(port, name="gw", client_ref=None):
    g = gateway([listener("http", port)], name=name)
    if client_ref is not None:
        g["spec"]["tls"] = {"backend": {"clientCertificateRef": client_ref}}
    return g


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path / "pki")


def test_backend_client_certificate_presented(env, ca):
    srv = MTLSHTTP(*ca.issue("secure.example.com"), ca.crt)
    try:
        port, port2 = free_port(), free_port()
        objs = [gatewayclass(), _gw(port, client_ref={"group": "", "kind": "Secret", "name": "client"}),
                _gw(port2, name="nocert"),
                tls_secret("client", *ca.issue("pylon-client", client=True)), ca_configmap("ca", ca.crt),
                _policy("mtls"), httproute("r", [rule([match("/")], [ref("mtls")])]),
                httproute("r2", [rule([match("/")], [ref("mtls")])], parent="nocert")] + backend("mtls", srv.port)
        env.pylon(objs, gateway_obj=False)
        r = fetch(port, "/x")
        assert r.status == 200 and r.body == b"client=pylon-client", r
        # a Gateway without a client certificate reaches the same backend without one: refused by it
        r = fetch(port2, "/x")
        assert r.status == 502, r
    finally:
        srv.stop()


def _gw_conditions(yaml_text, name):
    for d in yaml_text.split("\n---"):
        if re.search(r"^kind: Gateway$", d, re.M) and re.search(rf"^  name: \"?{name}\"?$", d, re.M):
            top = d.split("\n  listeners:")[0]
            return {t: (st, rs) for rs, st, t in
                    re.findall(r"reason: \"?(\w+)\"?\n\s*status: \"?(\w+)\"?\n\s*type: \"?(\w+)\"?", top)}
    raise AssertionError(f"no Gateway {name}")


def test_backend_client_certificate_statuses(env, ca, tmp_path):
    mdir = tmp_path / "m"
    mdir.mkdir()
    cases = {
        "good": {"group": "", "kind": "Secret", "name": "client"},
        "missing": {"group": "", "kind": "Secret", "name": "nonexistent"},
        "group": {"group": "wrong.group.company.io", "kind": "Secret", "name": "client"},
        "kind": {"group": "", "kind": "WrongKind", "name": "client"},
        "malformed": {"group": "", "kind": "Secret", "name": "malformed"},
        "xns": {"group": "", "kind": "Secret", "name": "client", "namespace": "other"},
    }
    objs = [gatewayclass()] + [_gw(8000 + i, name=n, client_ref=r) for i, (n, r) in enumerate(cases.items())]
    objs += [tls_secret("client", *ca.issue("pylon-client", client=True)),
             tls_secret("client", *ca.issue("pylon-client", client=True), ns="other"),
             {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "malformed", "namespace": "default"},
              "type": "Opaque", "data": {}}]
    write_objects(mdir / "all.yaml", objs)
    out = env.check(mdir).stdout
    want = {"good": ("True", "ResolvedRefs"), "missing": ("False", "InvalidClientCertificateRef"),
            "group": ("False", "InvalidClientCertificateRef"), "kind": ("False", "InvalidClientCertificateRef"),
            "malformed": ("False", "InvalidClientCertificateRef"), "xns": ("False", "RefNotPermitted")}
    for name, rr in want.items():
        conds = _gw_conditions(out, name)
        assert conds["ResolvedRefs"] == rr, (name, conds)
        assert conds["Accepted"] == ("True", "Accepted"), (name, conds)
