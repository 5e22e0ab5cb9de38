"""A connect timeout to an h2c backend (proxy/h2up.c) is answered as one to an
HTTP/1.1 backend (proxy/upstream.c): 504, with the same log line, for
HTTP/1.1 and HTTP/2 clients alike. The backend address never answers a SYN:
a listening socket with backlog 0 whose accept queue is filled and never
accepted (Linux drops further SYNs)."""
import re
import socket
import time

import pytest

from helpers import SLOW, backend, httproute, match, ref, rule, wait_until
from test_h2_backends import curl_h2
from test_h2c_bridge import app_service


@pytest.fixture
def blackhole():
    """A loopback port whose connects hang (SYNs dropped)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        pytest.skip("the kernel completed a connect to a full accept queue")
    except (socket.timeout, TimeoutError):
        pass
    finally:
        probe.close()
    yield port
    for c in fillers:
        c.close()
    lsock.close()


def test_h2c_connect_timeout_is_504_like_http1(env, blackhole):
    objs = (app_service("h2", [blackhole]) + backend("h1", blackhole) +
            [httproute("r", [rule([match("/h2c")], [ref("h2")]), rule([match("/h1")], [ref("h1")])])])
    p = env.pylon(objs, args=["--connect-timeout", "300"])
    for path in ("/h1", "/h2c"):
        t0 = time.monotonic()
        r = p.get(path)
        took = time.monotonic() - t0
        assert r.status == 504, (path, r)
        assert 0.25 <= took < 3 * SLOW, (path, took)
    # an HTTP/2 client: the h2.c owner of the h2up stream answers the same
    tail, _ = curl_h2(p.port, "/h2c")
    assert tail == "2 504", tail
    tail, _ = curl_h2(p.port, "/h1")
    assert tail == "2 504", tail
    # one log line style for both backends: '"GET /path" 504: connect to ADDR timed out'
    for path in ("/h1", "/h2c"):
        pat = rf'"GET {path}" 504: connect to 127\.0\.0\.1:{blackhole} timed out'
        wait_until(lambda: re.search(pat, p.log()), 5, what=f"the 504 log line for {path}")
