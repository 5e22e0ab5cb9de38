"""An unusable BackendTLSPolicy fails every request closed (5xx) but is logged
once per (table generation, cluster), not once per request: HTTP/1.1 clusters
(upstream.c) and HTTP/2 clusters (h2up.c) alike, across workers; a new table
generation logs it once more."""
import pytest

from helpers import backend, free_port, httproute, match, ref, rule, wait_until
from test_backend_tls import policy
from test_h2c_bridge import app_service

JUNK_CA = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "junk", "namespace": "default"},
           "data": {"ca.crt": "garbage"}}


def warn_count(p, pol):
    return p.log().count(f"BackendTLSPolicy default/{pol} is unusable")


@pytest.mark.parametrize("kind", ["http1", "h2c"])
def test_unusable_policy_warned_once_per_generation(env, kind):
    # nothing listens there: the policy refuses the cluster before any connect
    svc = backend("s", free_port()) if kind == "http1" else app_service("s", [free_port()])
    objs = svc + [JUNK_CA, policy("p", "s", "secure.example.com", ca_refs=[("ConfigMap", "junk")]),
                  httproute("r", [rule([match("/")], [ref("s")])])]
    p = env.pylon(objs, workers=2)
    for i in range(8):      # a new connection each: both workers see the cluster
        r = p.get(f"/x{i}")
        assert r.status >= 500, r
    wait_until(lambda: warn_count(p, "p") >= 1, 5, what="the unusable-policy warning")
    assert warn_count(p, "p") == 1, p.log()

    # another table generation: one more line, then silence again
    gen = p.generation()
    p.write("60-extra.yaml", [httproute("other", [rule([match("/other")], [ref("s")])])])
    wait_until(lambda: p.generation() > gen, 10, what="a new table generation")
    for i in range(6):
        assert p.get(f"/y{i}").status >= 500
    wait_until(lambda: warn_count(p, "p") >= 2, 5, what="the warning for the new generation")
    assert warn_count(p, "p") == 2, p.log()
