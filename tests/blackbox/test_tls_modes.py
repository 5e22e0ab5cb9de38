"""TLSRoute mode Terminate (TLS terminated with the listener's certificate,
plaintext TCP to the route's backend) and mixed ports: HTTPS, TLS Terminate
and TLS Passthrough listeners sharing one port, the ClientHello's SNI picking
the listener."""
import select
import shutil
import subprocess
import time

import pytest

from helpers import backend, free_port, httproute, match, ref, rule, write_objects
from tlsutil import (CA, TCPEcho, TLSEcho, https_get, https_listener, l4_backend, l4_route, peer_cn,
                     tls_connect, tls_secret)


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path / "pki")


def _recv_until(s, want, limit=1 << 20):
    data = b""
    while want not in data and len(data) < limit:
        d = s.recv(65536)
        if not d:
            break
        data += d
    return data


def test_tlsroute_terminate(env, ca):
    port = free_port()
    echo = TCPEcho(b"t:")
    try:
        objs = [tls_secret("tls", *ca.issue("tls.example.com"))] + l4_backend("plain", echo.port, svc_port=3000) + [
            l4_route("TLSRoute", "term", [("plain", 3000, None)], hostnames=["tls.example.com"])]
        env.pylon(objs, listeners=[https_listener("tlsterm", port, ["tls"], hostname="tls.example.com",
                                                  protocol="TLS")])
        with tls_connect(port, "tls.example.com", ca.crt) as s:
            assert peer_cn(s) == "tls.example.com"       # the listener's certificate, not the backend's
            assert s.selected_alpn_protocol() is None
            s.sendall(b"hello\n")
            assert _recv_until(s, b"hello\n") == b"t:hello\n"
            # more than the stream's buffers in one go: backpressure through TLS both ways
            blob = b"0123456789abcdef" * 16384
            s.sendall(blob)
            got = b""
            while len(got.replace(b"t:", b"")) < len(blob):
                d = s.recv(65536)
                if not d:
                    break
                got += d
            assert got.replace(b"t:", b"") == blob
        # a name the listener does not own: no route, refused without hanging
        t0 = time.monotonic()
        with pytest.raises(OSError):
            with tls_connect(port, "other.example.com", ca.crt) as s:
                s.sendall(b"x\n")
                if not s.recv(10):
                    raise ConnectionError("closed")
        assert time.monotonic() - t0 < 3
    finally:
        echo.stop()


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl CLI not installed")
def test_tlsroute_terminate_openssl_s_client(env, ca):
    port = free_port()
    echo = TCPEcho(b"s:")
    try:
        objs = [tls_secret("tls", *ca.issue("tls.example.com"))] + l4_backend("plain", echo.port, svc_port=3000) + [
            l4_route("TLSRoute", "term", [("plain", 3000, None)], hostnames=["tls.example.com"])]
        env.pylon(objs, listeners=[https_listener("tlsterm", port, ["tls"], hostname="tls.example.com",
                                                  protocol="TLS")])
        p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                              "tls.example.com", "-CAfile", str(ca.crt), "-verify_return_error", "-quiet"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            p.stdin.write(b"ping\n")
            p.stdin.flush()
            out = b""
            deadline = time.monotonic() + 5
            while b"s:ping\n" not in out and time.monotonic() < deadline:
                r, _, _ = select.select([p.stdout], [], [], 0.2)
                if r:
                    d = p.stdout.read1(4096)
                    if not d:
                        break
                    out += d
            assert b"s:ping\n" in out
        finally:
            p.kill()
            p.communicate()
        assert b"s:CN = tls.example.com" in subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "tls.example.com"],
            input=b"", capture_output=True, timeout=10).stdout
    finally:
        echo.stop()


def test_mixed_https_tls_terminate_and_passthrough(env, ca):
    """One port: HTTPS *.example.com, TLS Terminate tls.example.com, TLS Passthrough abc.example.com."""
    port = free_port()
    e = env.echo("https-pod")
    plain = TCPEcho(b"t:")
    pt = TLSEcho("pt", *ca.issue("abc.example.com"))
    try:
        objs = [tls_secret("wild", *ca.issue("*.example.com")), tls_secret("tls", *ca.issue("tls.example.com"))]
        objs += backend("echo", e.port) + [httproute("web", [rule([match("/")], [ref("echo")])], section="https")]
        objs += l4_backend("plain", plain.port, svc_port=3000) + l4_backend("pt", pt.port, svc_port=8443)
        objs += [l4_route("TLSRoute", "term", [("plain", 3000, None)], hostnames=["tls.example.com"],
                          section="tlsterm"),
                 l4_route("TLSRoute", "pass", [("pt", 8443, None)], hostnames=["abc.example.com"],
                          section="tlspass")]
        env.pylon(objs, listeners=[
            https_listener("https", port, ["wild"], hostname="*.example.com"),
            https_listener("tlsterm", port, ["tls"], hostname="tls.example.com", protocol="TLS"),
            https_listener("tlspass", port, [], hostname="abc.example.com", protocol="TLS", mode="Passthrough")])
        # passthrough: the backend's own certificate and its TLS
        with tls_connect(port, "abc.example.com", ca.crt) as s:
            assert peer_cn(s) == "abc.example.com"
            s.sendall(b"hi\n")
            assert _recv_until(s, b"\n") == b"pt:hi\n"
        assert pt.snis == ["abc.example.com"]
        # TLSRoute Terminate: our certificate, plaintext backend
        with tls_connect(port, "tls.example.com", ca.crt) as s:
            assert peer_cn(s) == "tls.example.com"
            s.sendall(b"hi\n")
            assert _recv_until(s, b"\n") == b"t:hi\n"
        # HTTPS: everything else under *.example.com, and no SNI (default certificate)
        for sni in ("www.example.com", None):
            with tls_connect(port, sni, ca.crt) as s:
                assert peer_cn(s) == "*.example.com"
                status, _, body = https_get(s, "www.example.com")
                assert status == 200 and b"https-pod" in body
    finally:
        plain.stop()
        pt.stop()


def test_mixed_port_statuses(env, ca, tmp_path):
    """HTTPS+TLS and TLS Terminate+Passthrough may share a port; HTTP+TLS may not."""
    from helpers import gatewayclass, gateway
    from test_tls import _listener_conditions
    mdir = tmp_path / "m"
    mdir.mkdir()
    objs = [gatewayclass(), gateway([
        https_listener("https", 8443, ["c"], hostname="www.example.com"),
        https_listener("term", 8443, ["c"], hostname="tls.example.com", protocol="TLS"),
        https_listener("pass", 8443, [], hostname="abc.example.com", protocol="TLS", mode="Passthrough"),
        {"name": "http", "port": 9000, "protocol": "HTTP"},
        https_listener("pass2", 9000, [], hostname="x.example.com", protocol="TLS", mode="Passthrough"),
    ]), tls_secret("c", *ca.issue("www.example.com"))]
    write_objects(mdir / "all.yaml", objs)
    ls = _listener_conditions(env.check(mdir).stdout)
    for name in ("https", "term", "pass"):
        assert ls[name]["Accepted"] == ("True", "Accepted"), name
        assert ls[name]["Conflicted"] == ("False", "NoConflicts"), name
    for name in ("http", "pass2"):
        assert ls[name]["Conflicted"] == ("True", "ProtocolConflict"), name
