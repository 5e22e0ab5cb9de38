"""The Helm chart (charts/pylon): lints clean, and renders the objects a platform team
deploys, wired to each other (Service selects the pods, the pods run pylon against the
cluster with --publish-service naming that Service, RBAC covers what the controller
watches and writes)."""
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pylon"


@pytest.fixture(scope="module")
def helm():
    r = subprocess.run(["bash", str(ROOT / "scripts" / "helm.sh")], capture_output=True, text=True,
                       timeout=1200)
    if r.returncode != 0:
        pytest.fail(f"cannot build helm: {r.stderr[-2000:]}")
    return r.stdout.strip()


def render(helm, *sets):
    args = [helm, "template", "gw", str(CHART), "--namespace", "edge", "--kube-version", "1.36.0"]
    for s in sets:
        args += ["--set", s]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def test_chart_lints_strict(helm):
    r = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_chart_renders_wired_objects(helm):
    docs = render(helm)
    (dep,) = by_kind(docs, "Deployment")
    (svc,) = by_kind(docs, "Service")
    (gc,) = by_kind(docs, "GatewayClass")
    assert svc["spec"]["type"] == "LoadBalancer"
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert args[:2] == ["run", "--in-cluster"]
    assert f"--publish-service=edge/{svc['metadata']['name']}" in args
    assert f"--controller-name={gc['spec']['controllerName']}" in args
    assert f"--gateway-class-name={gc['metadata']['name']}" in args
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert [p["port"] for p in svc["spec"]["ports"]] == [80, 443]
    assert {p["containerPort"] for p in c["ports"]} >= {80, 443}
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == \
        by_kind(docs, "ServiceAccount")[0]["metadata"]["name"]


def test_chart_rbac_covers_the_controller(helm):
    docs = render(helm)
    (cr,) = by_kind(docs, "ClusterRole")
    granted = {}
    for rule in cr["rules"]:
        for g in rule["apiGroups"]:
            for res in rule["resources"]:
                granted.setdefault((g, res), set()).update(rule["verbs"])
    for res in ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "tlsroutes", "referencegrants"]:
        assert {"list", "watch"} <= granted[("gateway.networking.k8s.io", res)], res
    for res in ["gatewayclasses/status", "gateways/status", "httproutes/status"]:
        assert {"update", "patch"} & granted[("gateway.networking.k8s.io", res)], res
    for g, res in [("", "services"), ("", "secrets"), ("", "namespaces"), ("discovery.k8s.io", "endpointslices")]:
        assert {"list", "watch"} <= granted[(g, res)], res
    (role,) = by_kind(docs, "Role")
    assert any("leases" in r["resources"] and "update" in r["verbs"] for r in role["rules"])


def test_chart_values_change_the_render(helm):
    docs = render(helm, "gatewayClass.create=false", "service.type=NodePort", "workers=3",
                  "service.ports[0].name=web", "service.ports[0].port=8080")
    assert not by_kind(docs, "GatewayClass")
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["type"] == "NodePort"
    assert [p["port"] for p in svc["spec"]["ports"]] == [8080]
    (dep,) = by_kind(docs, "Deployment")
    assert "--workers=3" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
