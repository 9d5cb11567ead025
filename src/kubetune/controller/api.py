"""Typed specs of the kubetune.dev/v1alpha1 custom resources (TrainJob and the runtimes).

The CRD schemas in ``deploy/crds`` are what the API server enforces; these pydantic models are
what the controller and the SDK build and read. Field names are the CRD's camelCase names;
Kubernetes-native parts (env vars, tolerations, volumes, resources, JobSet templates) stay
plain dicts and are validated against the official schemas where they end up.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubetune.contracts.kubernetes import GROUP
from kubetune.spec.base import StrictModel

# Replicated job names inside the JobSet; runtime templates name their containers the same way.
DATASET_INITIALIZER = "dataset-initializer"
MODEL_INITIALIZER = "model-initializer"
NODE = "node"


class CamelModel(StrictModel):
    """A strict model whose fields are written in camelCase in manifests."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, alias_generator=to_camel, populate_by_name=True)


class RuntimeRef(CamelModel):
    """Which runtime a TrainJob uses."""

    name: str = Field(min_length=1)
    kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    api_group: Literal["kubetune.dev"] = GROUP


class SecretRef(CamelModel):
    """A Secret in the TrainJob's namespace; each of its keys becomes an env var by reference."""

    name: str = Field(min_length=1)


class InitializerSource(CamelModel):
    """Where an initializer fetches from (``hf://``, ``s3://``, ``pkg://``, ...) and its credentials."""

    storage_uri: str | None = None
    env: list[dict[str, Any]] = Field(default_factory=list)
    secret_ref: SecretRef | None = None


class Initializer(CamelModel):
    """The dataset and model initializers."""

    dataset: InitializerSource | None = None
    model: InitializerSource | None = None


class Trainer(CamelModel):
    """The training workers: image, command, scale and the builtin LLM Trainer's config."""

    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[dict[str, Any]] = Field(default_factory=list)
    num_nodes: int | None = Field(default=None, ge=1)
    num_proc_per_node: int | None = Field(default=None, ge=1)
    resources_per_node: dict[str, Any] | None = None
    llm_config: dict[str, Any] | None = None


class PodOverrides(CamelModel):
    """Settings applied to every pod of the job."""

    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    volumes: list[dict[str, Any]] | None = None
    volume_mounts: list[dict[str, Any]] | None = None
    service_account_name: str | None = None


class TrainJobSpec(CamelModel):
    """``TrainJob.spec``."""

    runtime_ref: RuntimeRef
    initializer: Initializer | None = None
    trainer: Trainer = Field(default_factory=Trainer)
    suspend: bool = False
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    max_restarts: int = Field(default=0, ge=0, le=100)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    pod_overrides: PodOverrides | None = None


class TorchPolicy(CamelModel):
    """torchrun settings of a runtime."""

    num_proc_per_node: int = Field(default=1, ge=1)


class MLPolicy(CamelModel):
    """Scale defaults of a runtime."""

    num_nodes: int = Field(default=1, ge=1)
    torch: TorchPolicy = Field(default_factory=TorchPolicy)


class Coscheduling(CamelModel):
    """Gang scheduling with the scheduler-plugins coscheduling PodGroup."""

    schedule_timeout_seconds: int = Field(default=60, ge=1)
    scheduler_name: str | None = Field(
        default=None, description="Scheduler running the coscheduling plugin (e.g. scheduler-plugins-scheduler)."
    )


class PodGroupPolicy(CamelModel):
    """How the runtime's pods are gang-scheduled."""

    coscheduling: Coscheduling | None = None


class Workspace(CamelModel):
    """The shared run directory: a PVC made from ``volumeClaimTemplate``, mounted at ``mountPath``."""

    mount_path: str = "/workspace"
    volume_claim_template: dict[str, Any]


class RuntimeTemplate(CamelModel):
    """The JobSet template: ``spec`` is a JobSet spec with dataset-initializer, model-initializer and node jobs."""

    metadata: dict[str, Any] | None = None
    spec: dict[str, Any]


class RuntimeSpec(CamelModel):
    """``TrainingRuntime.spec`` / ``ClusterTrainingRuntime.spec``."""

    ml_policy: MLPolicy = Field(default_factory=MLPolicy)
    pod_group_policy: PodGroupPolicy | None = None
    initializer: Initializer | None = None
    llm_config: dict[str, Any] | None = None
    workspace: Workspace
    template: RuntimeTemplate
