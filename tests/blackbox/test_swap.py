"""Live table swaps: under load without a single failed request, and a broken
manifest that must leave the last good table in place."""
import http.client
import socket
import threading
import time

from helpers import SLOW, backend, fetch, httproute, match, ref, rule, wait_until


def routes(gen):
    """The stable route plus one that changes with every generation."""
    return [httproute("stable", [rule([match("/stable")], [ref("a")])]),
            httproute("moving", [rule([match(f"/gen-{gen}")], [ref("b")])])]


def test_swap_under_load_zero_failures(env):
    a, b = env.echo("stable-pod"), env.echo("moving-pod")
    p = env.pylon(backend("a", a.port) + backend("b", b.port))
    p.write("60-routes.yaml", routes(0))
    wait_until(lambda: p.get("/gen-0").status == 200, 5, what="first route")

    stop = threading.Event()
    failures = []
    done = [0]

    def keepalive_load():
        while not stop.is_set():
            c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5 * SLOW)
            try:
                for _ in range(50):
                    if stop.is_set():
                        break
                    c.request("GET", "/stable")
                    r = c.getresponse()
                    body = r.read()
                    if r.status != 200 or r.getheader("X-Echo-Pod") != "stable-pod":
                        failures.append(f"keep-alive: {r.status} {body[:200]!r}")
                    done[0] += 1
            except (OSError, http.client.HTTPException) as e:
                failures.append(f"keep-alive: {e!r}")
            finally:
                c.close()

    def fresh_load():
        while not stop.is_set():
            try:
                r = fetch(p.port, "/stable", headers={"Connection": "close"}, timeout=5)
                if r.status != 200 or r.pod != "stable-pod":
                    failures.append(f"fresh: {r!r}")
                done[0] += 1
            except (OSError, http.client.HTTPException) as e:
                failures.append(f"fresh: {e!r}")

    threads = [threading.Thread(target=keepalive_load, daemon=True),
               threading.Thread(target=fresh_load, daemon=True)]
    for t in threads:
        t.start()
    gen0 = p.generation()
    try:
        for gen in range(1, 21):
            p.write("60-routes.yaml", routes(gen))
            wait_until(lambda: p.get(f"/gen-{gen}").status == 200, 5, what=f"/gen-{gen} to appear")
            assert p.get(f"/gen-{gen - 1}").status == 404
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not failures, f"{len(failures)} failed of {done[0]}: {failures[:5]}"
    assert done[0] > 100, f"only {done[0]} requests ran during the swaps"
    assert p.get("/gen-20").pod == "moving-pod"
    assert p.generation() >= gen0 + 20


def test_broken_manifest_keeps_last_good_table(env):
    a = env.echo("a")
    p = env.pylon(backend("a", a.port))
    p.write("60-routes.yaml", [httproute("r", [rule([match("/left")], [ref("a")])])])
    wait_until(lambda: p.get("/left").status == 200, 5, what="route")
    gen = p.generation()
    log_before = len(p.log())

    (p.dir / "60-routes.yaml").write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                                          "metadata: {name: r\n  spec: [oops\n\t- : :\n")
    # let the controller notice (poll 50 ms) and log the failure
    wait_until(lambda: "60-routes.yaml" in p.log()[log_before:], 5,
               what="a log line naming the broken file")
    time.sleep(0.3 * SLOW)
    assert p.get("/left").status == 200, "old table must keep serving"
    assert p.generation() == gen, "a broken manifest must not publish a table"
    assert p.admin("/readyz").status == 200

    # semantically wrong (not YAML-broken) is not a reason to drop routes either: an HTTPRoute
    # without rules or with an unknown filter gets status, the rest keeps working
    p.write("60-routes.yaml", [httproute("r", [rule([match("/left")], [ref("a")])]),
                               httproute("r2", [rule([match("/right")], [ref("a")])])])
    wait_until(lambda: p.get("/right").status == 200, 5, what="fixed manifest to be picked up")
    assert p.generation() > gen
    assert p.get("/left").status == 200


def test_deleted_route_disappears(env):
    a = env.echo("a")
    p = env.pylon(backend("a", a.port))
    p.write("60-routes.yaml", [httproute("r", [rule([match("/gone")], [ref("a")])])])
    wait_until(lambda: p.get("/gone").status == 200, 5, what="route")
    (p.dir / "60-routes.yaml").unlink()
    wait_until(lambda: p.get("/gone").status == 404, 5, what="route removal")


def test_endpoint_change_is_picked_up(env):
    a, b = env.echo("old-ep"), env.echo("new-ep")
    p = env.pylon([httproute("r", [rule([match("/")], [ref("svc")])])])
    p.write("40-svc.yaml", backend("svc", a.port))
    wait_until(lambda: p.get("/").pod == "old-ep", 5, what="old endpoint")
    p.write("40-svc.yaml", backend("svc", b.port))
    wait_until(lambda: p.get("/").pod == "new-ep", 5, what="new endpoint")


def test_new_listener_port_after_swap(env):
    """A Gateway gaining a listener on a new port starts accepting there."""
    from helpers import free_port, gateway, gatewayclass, listener, write_objects
    a = env.echo("a")
    p = env.pylon(backend("a", a.port) + [httproute("r", [rule([match("/")], [ref("a")])])])
    port2 = free_port()
    write_objects(p.dir / "00-gateway.yaml",
                  [gatewayclass(), gateway([listener("http", p.port), listener("http2", port2)])])

    def up():
        s = socket.create_connection(("127.0.0.1", port2), 1)
        s.close()
        return fetch(port2, "/x").status == 200
    wait_until(up, 5, what="second listener")
    assert p.get("/x").status == 200
