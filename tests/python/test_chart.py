"""The Helm chart, linted and rendered by Helm's own SDK (helm-python-sdk), every object
validated against the Kubernetes schemas (kubernetes-validate, strict).

The CollectorPool the chart can create is checked by netpulse itself: `netpulse operator
render --pool` parses it (unknown fields refused) and builds the pool's objects. The binary
is NETPULSE_BIN, by default target/debug/netpulse (built by scripts/test).
"""

import os
import subprocess
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "netpulse"
BINARY = os.environ.get("NETPULSE_BIN", str(ROOT / "target" / "debug" / "netpulse"))
KUBERNETES = "1.30.0"


def _render(values):
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name="np", namespace="netpulse")
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def _kinds(docs):
    return sorted(d["kind"] for d in docs)


def test_the_chart_lints_clean():
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBERNETES}")
    assert report["errors"] == [], report
    # Info only (an icon is recommended); no warnings or errors.
    assert all(m["severity"] <= 1 for m in report["messages"]), report


def test_defaults_install_the_operator_only():
    docs = _render({})
    assert _kinds(docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    operator = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NODE_ROLE"]["value"] == "operator"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert operator["spec"]["replicas"] == 2


def test_a_pool_and_an_ingress_when_asked(tmp_path):
    docs = _render({"pool": {"create": True}, "ingress": {"enabled": True, "tlsSecret": "np-tls"}})
    assert "CollectorPool" in _kinds(docs) and "Ingress" in _kinds(docs)
    for doc in docs:
        if doc["kind"] != "CollectorPool":
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    pool = next(d for d in docs if d["kind"] == "CollectorPool")
    ingress = next(d for d in docs if d["kind"] == "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    # The Ingress points at the web Service the operator creates for the pool.
    children = _children(pool, tmp_path)
    services = [c for c in children if c["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == [backend["name"]]
    assert backend["port"]["name"] in [p["name"] for p in services[0]["spec"]["ports"]]


def _children(pool, tmp_path):
    if not Path(BINARY).exists():
        pytest.fail(f"{BINARY} is missing: build netpulse first (cargo build)")
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(pool))
    out = subprocess.run(
        [BINARY, "operator", "render", "--pool", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _grants(rules):
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def test_the_operator_holds_every_permission_it_grants_collectors(tmp_path):
    # Kubernetes refuses to let the operator create a Role granting more than it holds.
    docs = _render({"pool": {"create": True}})
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole")
    pool = next(d for d in docs if d["kind"] == "CollectorPool")
    collector_role = next(c for c in _children(pool, tmp_path) if c["kind"] == "Role")
    missing = _grants(collector_role["rules"]) - _grants(cluster_role["rules"])
    assert not missing, f"the operator cannot grant {sorted(missing)}"
