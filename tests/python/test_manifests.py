"""The objects the operator creates for a CollectorPool, validated against the Kubernetes
schemas (kubernetes-validate, strict: unknown fields are errors).

`netpulse operator render` prints them for the example pool; the binary is NETPULSE_BIN,
by default target/debug/netpulse (built by scripts/test).
"""

import copy
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("NETPULSE_BIN", str(ROOT / "target" / "debug" / "netpulse"))
# The oldest Kubernetes netpulse supports: the collectors' preStop `sleep` action is GA
# in 1.30.
KUBERNETES = "1.30.0"


def _render(*extra):
    if not Path(BINARY).exists():
        pytest.fail(f"{BINARY} is missing: build netpulse first (cargo build)")
    out = subprocess.run(
        [BINARY, "operator", "render", "--pool", str(ROOT / "examples" / "collectorpool.yaml"), *extra],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def test_every_object_of_a_pool_is_valid_kubernetes():
    docs = _render("--collectors", "4")
    kinds = [d["kind"] for d in docs]
    assert kinds == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    assert docs[3]["spec"]["replicas"] == 4


def test_the_validator_refuses_what_kubernetes_would():
    # Guards the test above: a wrong type and an unknown field are caught.
    deployment = _render()[3]
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES, strict=True)
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBERNETES, strict=True)
