"""Fixtures of the Kubernetes tests: schema validators and a catalog runtime."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from k8s_schemas import DEPLOY, JOBSET_CRD, crd_schema, schema_validator


@pytest.fixture(scope="session")
def jobset_validator() -> jsonschema.Validator:
    """Validator of the JobSet CRD's openAPIV3Schema from ../shared/k8s."""
    if not JOBSET_CRD.is_file():
        pytest.skip(f"JobSet CRD schema not found at {JOBSET_CRD} (expected beside the repository)")
    return schema_validator(crd_schema(JOBSET_CRD))


@pytest.fixture(scope="session")
def trainjob_validator() -> jsonschema.Validator:
    """Validator of our TrainJob CRD's openAPIV3Schema."""
    return schema_validator(crd_schema(DEPLOY / "crds" / "kubetune.dev_trainjobs.yaml"))


@pytest.fixture
def runtime() -> dict:
    """The packaged smollm2-135m-lora ClusterTrainingRuntime manifest (a fresh copy)."""
    from kubetune.runtimes import get_runtime

    return copy.deepcopy(get_runtime("smollm2-135m-lora").manifest)
