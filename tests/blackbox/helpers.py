"""Black-box test helpers: processes, free ports, manifests, HTTP clients.

Standard library only. Manifests are written as JSON documents inside *.yaml
files (JSON is YAML), one object per file, so no YAML library is needed.
"""
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYLON_BIN = os.environ.get("PYLON_BIN") or str(REPO / "build" / "pylon")
SANITIZER = os.environ.get("PYLON_SANITIZER", "")
# Sanitizer builds are several times slower: stretch waits, not assertions on timing.
SLOW = 4.0 if SANITIZER else 1.0
CONTROLLER = "pylon.dev/gateway-controller"
GWAPI = "gateway.networking.k8s.io/v1"


_given_ports = set()


def free_port(kind=socket.SOCK_STREAM):
    """A port nobody listens on right now (bind the wildcard address to 0 and
    read it back), never one this test session handed out before: the kernel
    may return a just-closed port again, and a test that asks twice (listener
    and admin port) must get two different ports."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("0.0.0.0", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def wait_until(fn, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, http.client.HTTPException) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout * SLOW:.1f}s waiting for {what} (last: {last!r})")


# ---------------------------------------------------------------- manifests

def gatewayclass(name="pylon", controller=CONTROLLER):
    return {"apiVersion": GWAPI, "kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": controller}}


def listener(name, port, hostname=None, protocol="HTTP"):
    l = {"name": name, "protocol": protocol, "port": port}
    if hostname is not None:
        l["hostname"] = hostname
    return l


def gateway(listeners, name="gw", ns="default", cls="pylon"):
    return {"apiVersion": GWAPI, "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
            "spec": {"gatewayClassName": cls, "listeners": listeners}}


def match(path=None, ptype="PathPrefix", headers=None, query=None, method=None):
    """headers/query: dict name -> value (Exact) or name -> ("RegularExpression", value)."""
    m = {}
    if path is not None:
        m["path"] = {"type": ptype, "value": path}

    def kv(d):
        out = []
        for k, v in d.items():
            if isinstance(v, tuple):
                out.append({"type": v[0], "name": k, "value": v[1]})
            else:
                out.append({"name": k, "value": v})
        return out
    if headers:
        m["headers"] = kv(headers)
    if query:
        m["queryParams"] = kv(query)
    if method:
        m["method"] = method
    return m


def ref(name, port=80, weight=None, kind=None, filters=None):
    r = {"name": name, "port": port}
    if weight is not None:
        r["weight"] = weight
    if kind is not None:
        r["kind"] = kind
    if filters:
        r["filters"] = filters
    return r


def rule(matches=None, backends=None, filters=None, timeouts=None):
    r = {}
    if matches is not None:
        r["matches"] = matches
    if backends is not None:
        r["backendRefs"] = backends
    if filters:
        r["filters"] = filters
    if timeouts:
        r["timeouts"] = timeouts
    return r


def httproute(name, rules, hostnames=None, parent="gw", section=None, ns="default"):
    p = {"name": parent}
    if section:
        p["sectionName"] = section
    spec = {"parentRefs": [p], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": GWAPI, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def service(name, port=80, ns="default"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]}}


def endpointslice(svc, ports, ns="default", ready=True, name=None):
    """ports: list of 127.0.0.1 ports of the service's endpoints (all on one port per slice)."""
    objs = []
    for i, p in enumerate(ports):
        objs.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{svc}-{i}-{p}", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": p, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
        })
    return objs


def backend(svc, *ports, ns="default", ready=True):
    """A Service plus EndpointSlices pointing at 127.0.0.1:port for each port."""
    return [service(svc, ns=ns)] + endpointslice(svc, list(ports), ns=ns, ready=ready)


def write_objects(path, objs):
    """One file holding several documents (YAML stream of JSON documents); atomic replace."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n---\n".join(json.dumps(o, indent=1) for o in objs) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- HTTP

class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers            # list of (name, value)
        self.body = body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    @property
    def pod(self):
        return self.header("X-Echo-Pod")

    def __repr__(self):
        return f"<Resp {self.status} {self.headers!r} {self.body[:200]!r}>"


def _request(conn, path, method, headers, body, host):
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host)
    for k, v in (headers or {}).items():
        if isinstance(v, (list, tuple)):
            for x in v:
                conn.putheader(k, x)
        else:
            conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    data = r.read()
    return Resp(r.status, r.getheaders(), data)


def fetch(port, path="/", method="GET", headers=None, body=None, host=None, timeout=10):
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOW)
    try:
        return _request(conn, path, method, headers, body, host or f"127.0.0.1:{port}")
    finally:
        conn.close()


class Client:
    """A keep-alive client: every request on the same TCP connection (fails if it was closed)."""

    def __init__(self, port, host=None, timeout=10):
        self.port = port
        self.host = host or f"127.0.0.1:{port}"
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOW)
        self.conn.connect()
        self.local = self.conn.sock.getsockname()

    def get(self, path, method="GET", headers=None, body=None, host=None):
        if self.conn.sock is None:
            raise AssertionError("keep-alive connection was closed by the server")
        if self.conn.sock.getsockname() != self.local:
            raise AssertionError("client reconnected: keep-alive connection was not reused")
        return _request(self.conn, path, method, headers, body, host or self.host)

    def close(self):
        self.conn.close()


def raw_exchange(port, data, timeout=5.0, chunks=None):
    """Sends data (or each of chunks), reads until the server closes or timeout.
    Returns (bytes received, closed_by_server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    out = b""
    closed = False
    try:
        for c in (chunks or [data]):
            s.sendall(c)
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            if not d:
                closed = True
                break
            out += d
    finally:
        s.close()
    return out, closed


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, args, env=None, log=None, stdout_pipe=False):
        self.name = name
        self.args = args
        self.log_path = log
        self.logf = open(log, "wb") if log else subprocess.DEVNULL
        e = dict(os.environ)
        e.pop("PYLON_LOG", None)
        e.update(env or {})
        self.p = subprocess.Popen(args, env=e, stdout=subprocess.PIPE if stdout_pipe else self.logf,
                                  stderr=self.logf, stdin=subprocess.DEVNULL)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def log(self):
        if not self.log_path:
            return ""
        if not self.logf.closed:
            self.logf.flush()
        return Path(self.log_path).read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Stops the process; returns its exit code (None if it had to be killed)."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                rc = None
            else:
                rc = self.p.returncode
        else:
            rc = self.p.returncode
        if self.p.stdout:
            self.p.stdout.close()
        if self.logf is not subprocess.DEVNULL:
            self.logf.close()
        return rc

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Echo(Proc):
    """A `pylon echo` backend on a kernel-chosen port (read back from its stdout), or
    another command (cmd) that prints "listening on ADDR:PORT" first."""

    def __init__(self, pod, log, cmd=None):
        cmd = cmd or [PYLON_BIN, "echo", "--listen", "127.0.0.1:0"]
        super().__init__(f"echo {pod}", cmd, env={"POD_NAME": pod, "NAMESPACE": "default"}, log=log,
                         stdout_pipe=True)
        self.pod = pod
        r, _, _ = select.select([self.p.stdout], [], [], 10 * SLOW)
        line = self.p.stdout.readline().decode(errors="replace") if r else ""
        m = re.search(r"listening on [0-9.]+:(\d+)", line)
        if not m:
            self.stop()
            raise AssertionError(f"{cmd[0]} did not start (stdout: {line!r}): {self.log()}")
        self.port = int(m.group(1))

    def stats(self):
        return fetch(self.port, "/__echo/stats").json()


class Pylon(Proc):
    def __init__(self, mdir, log, port, admin_port, args):
        self.dir = Path(mdir)
        self.port = port
        self.admin_port = admin_port
        super().__init__("pylon", [PYLON_BIN, "run", "--manifests", str(mdir),
                                   "--admin", f"127.0.0.1:{admin_port}"] + args, log=log)

    def wait_ready(self, timeout=10):
        def ready():
            if not self.alive():
                raise AssertionError(f"pylon exited with {self.p.returncode}:\n{self.log()}")
            return fetch(self.admin_port, "/readyz", timeout=1).status == 200
        wait_until(ready, timeout, what="pylon /readyz")
        if self.port:
            wait_until(lambda: socket.create_connection(("127.0.0.1", self.port), 1).close() or True,
                       timeout, what=f"gateway port {self.port}")

    def get(self, path="/", **kw):
        return fetch(self.port, path, **kw)

    def admin(self, path):
        return fetch(self.admin_port, path)

    def metrics(self):
        r = self.admin("/metrics")
        assert r.status == 200, r
        return r.body.decode()

    def generation(self):
        """The table generation exported on /metrics (any metric named *generation*)."""
        for line in self.metrics().splitlines():
            m = re.match(r"^([a-zA-Z_:]*generation[a-zA-Z_:]*)(\{[^}]*\})?\s+([0-9.e+]+)", line)
            if m:
                return int(float(m.group(3)))
        raise AssertionError("no *generation* metric on /metrics:\n" + self.metrics())

    def write(self, name, objs):
        write_objects(self.dir / name, objs)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "WARNING: ThreadSanitizer", "runtime error:",
                   "ERROR: LeakSanitizer", "pylon: PANIC")


class Env:
    """Everything one test starts; stop_all() always runs (pytest fixture teardown)."""

    def __init__(self, tmp_path):
        self.tmp = Path(tmp_path)
        self.procs = []
        self.threads = []
        self.n = 0

    def _log(self, name):
        self.n += 1
        return str(self.tmp / f"{self.n:02d}-{re.sub(r'[^a-zA-Z0-9_.-]', '_', name)}.log")

    def echo(self, pod):
        e = Echo(pod, self._log("echo-" + pod))
        self.procs.append(e)
        return e

    def pylon(self, objs=None, files=None, args=(), listeners=None, gateway_obj=True, workers=2,
              wait=True, mdir=None):
        """Writes the manifests (GatewayClass + Gateway "gw" with one HTTP listener on a free
        port, unless gateway_obj is False or listeners are given) and starts pylon run."""
        mdir = Path(mdir or self.tmp / f"manifests{self.n}")
        mdir.mkdir(parents=True, exist_ok=True)
        port = None
        if gateway_obj:
            if listeners is None:
                port = free_port()
                listeners = [listener("http", port)]
            else:
                port = listeners[0]["port"]
            write_objects(mdir / "00-gateway.yaml", [gatewayclass(), gateway(listeners)])
        if objs:
            write_objects(mdir / "50-objects.yaml", objs)
        for name, text in (files or {}).items():
            (mdir / name).write_text(text)
        args = ["--workers", str(workers), "--poll-ms", "50"] + list(args)
        p = Pylon(mdir, self._log("pylon"), port, free_port(), args)
        self.procs.append(p)
        if wait:
            p.wait_ready()
        return p

    def check(self, mdir, *extra):
        return subprocess.run([PYLON_BIN, "check", "--manifests", str(mdir)] + list(extra),
                              capture_output=True, text=True, timeout=30 * SLOW)

    def thread(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def logs(self):
        out = []
        for p in self.procs:
            text = p.log()
            if text:
                out.append((p.name, text[-6000:]))
        return out

    def stop_all(self):
        problems = []
        for p in reversed(self.procs):
            p.stop()
            text = p.log()
            for mark in SANITIZER_MARKS:
                if mark in text:
                    problems.append(f"{p.name}: '{mark}' in its log:\n{text[-4000:]}")
                    break
        return problems


class LoopbackServer:
    """A TCP listener on a free loopback port whose accept loop runs in a thread and
    hands each connection to self.serve(conn): inline (one at a time) or, with
    threaded=True, in a thread of its own. stop() closes the listener."""

    def __init__(self, threaded=False):
        self.threaded = threaded
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.threaded:
                threading.Thread(target=self.serve, args=(c,), daemon=True).start()
            else:
                self.serve(c)

    def serve(self, c):
        raise NotImplementedError

    def stop(self):
        self.stopped = True
        self.sock.close()
        self.t.join(2)


def recv_head(c):
    """Reads from socket c until an HTTP head's blank line (or EOF); returns all bytes read."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(65536)
        if not d:
            break
        data += d
    return data


class RawBackend(LoopbackServer):
    """A tiny scripted backend: for each connection, reads a request head and
    sends `response` verbatim (bytes), then closes. For hostile-backend tests."""

    def __init__(self, response, delay=0.0):
        self.response = response
        self.delay = delay
        self.requests = []
        super().__init__()

    def serve(self, c):
        try:
            c.settimeout(5)
            data = recv_head(c)
            self.requests.append(data)
            time.sleep(self.delay)
            c.sendall(self.response)
        except OSError:
            pass
        finally:
            c.close()
