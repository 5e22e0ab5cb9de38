"""ListenerSet in standalone mode: a Gateway that allows ListenerSets from its namespace, a
ListenerSet adding an HTTP listener on another port, routes attached through it."""
import socket

from helpers import (GWAPI, backend, fetch, free_port, gateway, gatewayclass, httproute, listener,
                     match, ref, rule)


def listenerset(name, listeners, ns="default", parent="gw"):
    return {"apiVersion": GWAPI, "kind": "ListenerSet", "metadata": {"name": name, "namespace": ns},
            "spec": {"parentRef": {"name": parent, "namespace": "default"}, "listeners": listeners}}


def via_ls(route, ls, section=None):
    p = {"group": "gateway.networking.k8s.io", "kind": "ListenerSet", "name": ls}
    if section:
        p["sectionName"] = section
    route["spec"]["parentRefs"] = [p]
    return route


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return False
    except OSError:
        return True


def test_listenerset_http_listener(env):
    gw_port, ls_port, other_port = free_port(), free_port(), free_port()
    a, b = env.echo("gw-pod"), env.echo("ls-pod")
    gw = gateway([listener("http", gw_port)])
    gw["spec"]["allowedListeners"] = {"namespaces": {"from": "Same"}}
    objs = [gatewayclass(), gw] + backend("a", a.port) + backend("b", b.port) + [
        listenerset("extra", [listener("ls-http", ls_port, hostname="ls.example")]),
        # another namespace: not allowed by from: Same, its port stays closed
        listenerset("stray", [listener("stray-http", other_port)], ns="other"),
        httproute("on-gw", [rule([match("/gw")], [ref("a")])]),
        via_ls(httproute("on-ls", [rule([match("/ls")], [ref("b")])]), "extra", "ls-http"),
        # a Gateway parentRef never reaches a ListenerSet's listener
        httproute("gw-section", [rule([match("/wrong")], [ref("a")])], section="ls-http"),
    ]
    p = env.pylon(objs, gateway_obj=False)
    p.port = gw_port
    p.wait_ready()

    r = fetch(ls_port, "/ls", host="ls.example")
    assert r.status == 200 and r.pod == "ls-pod", r
    assert fetch(ls_port, "/ls", host="other.example").status == 404
    assert fetch(ls_port, "/gw", host="ls.example").status == 404, "Gateway routes stay on its listeners"
    assert fetch(ls_port, "/wrong", host="ls.example").status == 404
    r = p.get("/gw")
    assert r.status == 200 and r.pod == "gw-pod", r
    assert p.get("/ls").status == 404, "ListenerSet routes stay on its listeners"
    assert refused(other_port), "a ListenerSet the Gateway does not allow is not served"
