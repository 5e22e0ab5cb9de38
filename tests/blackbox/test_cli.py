"""The command line (help, version, exit codes), `pylon check`, and the admin
endpoints."""
import json
import re
import shutil
import subprocess

from helpers import (PYLON_BIN, REPO, SLOW, Client, Proc, backend, fetch, free_port, gateway,
                     gatewayclass, httproute, listener, match, ref, rule, wait_until, write_objects)


def run(*args, timeout=10):
    return subprocess.run([PYLON_BIN, *args], capture_output=True, text=True, timeout=timeout * SLOW)


def test_version():
    r = run("--version")
    assert r.returncode == 0
    assert re.fullmatch(r"pylon \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout


def test_help():
    r = run("--help")
    assert r.returncode == 0
    for word in ("run", "check", "echo", "--manifests"):
        assert word in r.stdout, r.stdout
    r = run("run", "--help")
    assert r.returncode == 0
    for opt in ("--manifests", "--admin", "--workers", "--max-conns", "--header-timeout"):
        assert opt in r.stdout, r.stdout


def test_bad_usage_exit_2():
    assert run().returncode == 2
    r = run("frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr
    r = run("run")
    assert r.returncode == 2 and "--manifests" in r.stderr
    assert run("run", "--manifests", "x", "--workers", "zero").returncode == 2
    assert run("run", "--manifests", "x", "--no-such-flag").returncode == 2
    assert run("echo").returncode == 2


def test_run_with_missing_manifests_fails_fast(tmp_path):
    r = run("run", "--manifests", str(tmp_path / "nope"), "--admin", f"127.0.0.1:{free_port()}",
            timeout=10)
    assert r.returncode != 0
    assert "nope" in r.stderr, r.stderr


def test_echo_refuses_busy_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        r = run("echo", "--listen", f"127.0.0.1:{s.getsockname()[1]}")
        assert r.returncode != 0
        assert "listen" in r.stderr
    finally:
        s.close()


def quickstart_copy(tmp_path):
    d = tmp_path / "qs"
    shutil.copytree(REPO / "examples" / "quickstart", d)
    return d


def test_check_quickstart_accepted(env, tmp_path):
    r = env.check(quickstart_copy(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for kind in ("GatewayClass", "Gateway", "HTTPRoute"):
        assert kind in out, out
    assert "Accepted" in out and "ResolvedRefs" in out, out
    conds = re.findall(r"status:\s*[\"']?(True|False)[\"']?\s*\n\s*type:\s*(\w+)", out)
    assert len(conds) >= 6, out
    for status, typ in conds:
        want = "False" if typ == "Conflicted" else "True"
        assert status == want, f"condition {typ} is {status}:\n{out}"


def test_check_reports_rejections(env, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    write_objects(d / "all.yaml", [
        gatewayclass(), gateway([listener("http", 8080)]),
        httproute("no-svc", [rule([match("/a")], [ref("missing")])]),
        httproute("bad-kind", [rule([match("/b")], [ref("x", kind="Unicorn")])]),
    ])
    r = env.check(d)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "BackendNotFound" in r.stdout, r.stdout
    assert "InvalidKind" in r.stdout, r.stdout
    assert "no-svc" in r.stdout and "bad-kind" in r.stdout


def test_check_unreadable_exit_2(env, tmp_path):
    r = env.check(tmp_path / "does-not-exist")
    assert r.returncode == 2, r
    d = tmp_path / "broken"
    d.mkdir()
    (d / "x.yaml").write_text("kind: HTTPRoute\nmetadata: {name: [unclosed\n")
    r = env.check(d)
    assert r.returncode == 2, r
    assert "x.yaml" in r.stdout + r.stderr


def test_admin_endpoints(env):
    a = env.echo("a")
    p = env.pylon(backend("left", a.port) + [httproute("left", [rule([match("/left")], [ref("left")])])])
    assert p.admin("/healthz").status == 200
    assert p.admin("/readyz").status == 200
    c = Client(p.port)
    for _ in range(3):
        assert c.get("/left").status == 200
    assert c.get("/nothing").status == 404
    c.close()
    m = p.metrics()
    total = 0
    for line in m.splitlines():
        if line.startswith("#") or "default/left" not in line:
            continue
        mm = re.search(r"\s([0-9.e+]+)$", line)
        if mm and ("2xx" in line or 'code="200"' in line or "status" in line):
            total += float(mm.group(1))
    assert total >= 3, "per-route 2xx counter for HTTPRoute default/left not found or < 3:\n" + m
    p.generation()
    cfg = p.admin("/config")
    assert cfg.status == 200
    doc = json.loads(cfg.body)
    assert "default/left" in json.dumps(doc), cfg.body[:1000]
    assert p.admin("/no-such-admin-page").status == 404


def test_admin_off_still_serves(env, tmp_path):
    a = env.echo("a")
    port = free_port()
    d = tmp_path / "m2"
    d.mkdir()
    write_objects(d / "all.yaml", [gatewayclass(), gateway([listener("http", port)])]
                  + backend("a", a.port) + [httproute("r", [rule([match("/")], [ref("a")])])])
    q = Proc("pylon-admin-off", [PYLON_BIN, "run", "--manifests", str(d), "--admin", "off",
                                 "--workers", "1"], log=str(tmp_path / "admin-off.log"))
    env.procs.append(q)
    wait_until(lambda: fetch(port, "/").status == 200, 10, what="pylon with --admin off")
