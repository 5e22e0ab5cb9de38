"""TLS helpers for the black-box tests: certificates made with the openssl CLI
in a temporary directory, kubernetes.io/tls Secrets, Gateway API TLS/L4 route
objects, and small TLS/TCP/UDP backends (standard library only)."""
import base64
import socket
import ssl
import subprocess
import threading
from pathlib import Path

from helpers import GWAPI, LoopbackServer, free_port


def _run(*args):
    subprocess.run(list(args), check=True, capture_output=True, timeout=60)


class CA:
    """A throw-away CA; issue() makes leaf certificates signed by it."""

    def __init__(self, d, name="test-ca", key="ec"):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / f"{name}.key"
        self.crt = self.dir / f"{name}.crt"
        _run("openssl", "req", "-x509", "-newkey", *_keyargs(key), "-nodes", "-keyout", str(self.key),
             "-out", str(self.crt), "-subj", f"/CN={name}", "-days", "3",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.n = 0

    def issue(self, cn, sans=None, key="ec", client=False):
        """Returns (cert_path, key_path) for a leaf with CN cn and DNS SANs (default [cn])."""
        self.n += 1
        base = self.dir / f"leaf{self.n}-{cn.replace('*', 'star')}"
        k, csr, crt = Path(f"{base}.key"), Path(f"{base}.csr"), Path(f"{base}.crt")
        sans = sans if sans is not None else [cn]
        ext = Path(f"{base}.ext")
        lines = ["basicConstraints=CA:FALSE",
                 "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
        if sans:
            lines.append("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans))
        ext.write_text("\n".join(lines) + "\n")
        _run("openssl", "req", "-new", "-newkey", *_keyargs(key), "-nodes", "-keyout", str(k), "-out", str(csr),
             "-subj", f"/CN={cn}")
        _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.crt), "-CAkey", str(self.key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
        return crt, k


def _keyargs(key):
    if key == "rsa":
        return ["rsa:2048"]
    return ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]


def tls_secret(name, crt, key, ns="default"):
    b = lambda p: base64.b64encode(Path(p).read_bytes()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "type": "kubernetes.io/tls", "data": {"tls.crt": b(crt), "tls.key": b(key)}}


def ca_configmap(name, crt, ns="default"):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": {"ca.crt": Path(crt).read_text()}}


def https_listener(name, port, secrets, hostname=None, protocol="HTTPS", mode="Terminate"):
    l = {"name": name, "protocol": protocol, "port": port,
         "tls": {"mode": mode, "certificateRefs": [{"kind": "Secret", "name": s} for s in secrets]}}
    if mode == "Passthrough":
        del l["tls"]["certificateRefs"]
    if hostname is not None:
        l["hostname"] = hostname
    return l


def l4_route(kind, name, backends, hostnames=None, parent="gw", section=None, ns="default"):
    """TLSRoute / TCPRoute / UDPRoute with one rule; backends: [(svc, port, weight)]."""
    p = {"name": parent}
    if section:
        p["sectionName"] = section
    spec = {"parentRefs": [p], "rules": [{"backendRefs": [
        {"name": s, "port": port, **({"weight": w} if w is not None else {})} for s, port, w in backends]}]}
    if hostnames:
        spec["hostnames"] = hostnames
    api = "gateway.networking.k8s.io/v1alpha2"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}


def l4_backend(svc, *ports, protocol="TCP", svc_port=None, ns="default"):
    """A Service (port svc_port or the first port) with EndpointSlices at 127.0.0.1:port."""
    sp = svc_port or ports[0]
    objs = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
             "spec": {"ports": [{"name": "p", "port": sp, "protocol": protocol}]}}]
    for i, p in enumerate(ports):
        objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{svc}-{i}", "namespace": ns,
                                  "labels": {"kubernetes.io/service-name": svc}},
                     "addressType": "IPv4", "ports": [{"name": "p", "port": p, "protocol": protocol}],
                     "endpoints": [{"addresses": ["127.0.0.1"]}]})
    return objs


def client_ctx(ca=None, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca:
        ctx.load_verify_locations(str(ca))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def peer_cn(s):
    """CN of the certificate an ssl socket got (verification must be on)."""
    for rdn in s.getpeercert()["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def tls_connect(port, sni, ca=None, timeout=5, session=None, cert=None, ctx=None):
    ctx = ctx or client_ctx(ca, cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=sni, session=session)


def https_get(s, host, path="/"):
    """One HTTP/1.1 request on an ssl socket (keep-alive); returns (status, headers, body)."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(65536)
        if not d:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(body) < n:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return status, hdrs, body[:n]


class TLSEcho(LoopbackServer):
    """A TLS server (its own certificate) that answers each line with 'name:line'. For passthrough."""

    def __init__(self, name, crt, key):
        self.name = name
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(crt), str(key))
        self.snis = []
        super().__init__(threaded=True)

    def serve(self, c):
        def sni_cb(s, name, ctx):
            self.snis.append(name)
        self.ctx.sni_callback = sni_cb
        try:
            c.settimeout(5)
            s = self.ctx.wrap_socket(c, server_side=True)
            f = s.makefile("rwb")
            for line in f:
                f.write(self.name.encode() + b":" + line)
                f.flush()
            s.close()
        except (OSError, ssl.SSLError):
            c.close()

class TCPEcho(LoopbackServer):
    """Echoes bytes; on EOF from the client, sends 'bye' and half-closes too (to test half-close)."""

    def __init__(self, tag=b""):
        self.tag = tag
        super().__init__(threaded=True)

    def serve(self, c):
        try:
            c.settimeout(10)
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(self.tag + d)
            c.sendall(b"bye")
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

class UDPEcho:
    def __init__(self, tag=b""):
        self.tag = tag
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stopped:
            try:
                d, a = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.sock.sendto(self.tag + d, a)

    def stop(self):
        self.stopped = True
        self.sock.close()


def free_udp_port():
    return free_port(socket.SOCK_DGRAM)
