"""The Kubernetes manifests render with kustomize and every object is valid for Kubernetes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT

KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests target (PDB v1, HPA v2, Job TTL)

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def render(path: str) -> dict[tuple[str, str], dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(Path(ROOT) / path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(out.stdout) if doc}


def graceful_timeout(objects: dict[tuple[str, str], dict[str, Any]]) -> int:
    return int(objects[("ConfigMap", "synapse-config")]["data"]["SYNAPSE_GRACEFUL_TIMEOUT"])


@pytest.mark.parametrize("path", ["deploy/k8s/base", "deploy/k8s/overlays/example"])
def test_every_rendered_object_is_valid_kubernetes(path: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    objects = render(path)
    assert set(objects) == {
        ("ConfigMap", "synapse-config"),
        ("Deployment", "synapse"),
        ("Service", "synapse"),
        ("Job", "synapse-migrate"),
        ("HorizontalPodAutoscaler", "synapse"),
        ("PodDisruptionBudget", "synapse"),
    }
    for doc in objects.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_deployment_drains_before_it_is_killed_and_probes_the_right_endpoints() -> None:
    objects = render("deploy/k8s/base")
    pod = objects[("Deployment", "synapse")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful_timeout(objects)
    # Non-root, read-only root filesystem; /tmp is the one writable path (gunicorn's runtime dir).
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # Serving never migrates; the Job does, under the advisory lock.
    assert "migrate" not in " ".join(container["args"])
    job = objects[("Job", "synapse-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][:3] == ["python", "manage.py", "migrate_locked"]
    # Secrets by reference only.
    assert {"secretRef": {"name": "synapse-secrets"}} in container["envFrom"]


def test_the_selectors_match_the_pods() -> None:
    objects = render("deploy/k8s/base")
    labels = objects[("Deployment", "synapse")]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service",):
        assert objects[(kind, "synapse")]["spec"]["selector"].items() <= labels.items()
    for kind in ("Deployment", "PodDisruptionBudget"):
        assert objects[(kind, "synapse")]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_example_overlay_pins_an_image_and_a_namespace() -> None:
    objects = render("deploy/k8s/overlays/example")
    assert all(doc["metadata"]["namespace"] == "synapse" for doc in objects.values())
    image = objects[("Deployment", "synapse")]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/synapse:1.0.0"
    assert objects[("Job", "synapse-migrate")]["spec"]["template"]["spec"]["containers"][0]["image"] == image


def test_the_secret_example_holds_no_values() -> None:
    examples = list(yaml.safe_load_all((Path(ROOT) / "deploy/k8s/base/secret.example.yaml").read_text()))
    assert [e["metadata"]["name"] for e in examples] == ["synapse-secrets", "synapse-migrate-secrets"]
    for example in examples:
        assert example["stringData"] and all(value == "" for value in example["stringData"].values())
