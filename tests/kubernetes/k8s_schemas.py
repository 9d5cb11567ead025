"""Schemas the Kubernetes tests validate against (official Kubernetes, JobSet CRD, ours) and a TrainJob builder."""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# The JobSet CRD (kubernetes-sigs/jobset, Apache-2.0) is reference data kept beside the repository
# in shared/k8s/, not copied into it; KUBETUNE_JOBSET_CRD points elsewhere.
JOBSET_CRD = Path(
    os.environ.get("KUBETUNE_JOBSET_CRD", REPO.parent / "shared" / "k8s" / "jobset.x-k8s.io_jobsets.yaml")
)
KUBERNETES_VERSION = "1.33.0"


def crd_schema(path: Path) -> dict:
    """The openAPIV3Schema of the served version of a CRD file."""
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    return version["schema"]["openAPIV3Schema"]


def strict(schema: dict) -> dict:
    """Forbid unknown fields wherever the API server would prune them.

    A CRD schema does not say ``additionalProperties: false``: the API server drops unknown
    fields (and ``kubectl`` fails on them with strict field validation). Adding it to every
    object that lists its properties and does not preserve unknown fields makes a typo fail here too.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        out["properties"] = {name: strict(value) for name, value in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            out["additionalProperties"] = False
    return out


def schema_validator(schema: dict) -> jsonschema.Validator:
    """A strict jsonschema validator for an OpenAPI v3 CRD schema (x-kubernetes-* keywords are ignored)."""
    return jsonschema.Draft7Validator(strict(schema))


def validate_k8s(obj: dict) -> None:
    """Validate a built-in Kubernetes object against the official OpenAPI schemas (strict: no unknown fields)."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def make_trainjob(name: str = "tune", namespace: str = "team-a", labels: dict | None = None, **spec) -> dict:
    """A TrainJob object as the API server returns it (uid and generation set)."""
    body = {"runtimeRef": {"name": "smollm2-135m-lora", "kind": "ClusterTrainingRuntime"}, **spec}
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "0b7c5e1e-2f0a-4a53-9d5e-7f1b2c3d4e5f",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            **({"labels": labels} if labels else {}),
        },
        "spec": body,
    }
