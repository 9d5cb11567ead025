"""Turn a job spec plus Kubernetes options into a TrainJob manifest (pure; no cluster needed).

The LLM config carries only the fields the user set (pydantic's ``exclude_unset``), so the
runtime's defaults fill the rest on the controller side. Model and dataset paths that are
URIs (``hf://``, ``s3://``, ``pkg://``, ``https://``) become initializer storage URIs; the
trainer then reads ``<run>/model`` and ``<run>/dataset`` on the shared volume. A local path
cannot be reached from a cluster and is refused.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import Field

from kubetune.controller.api import API_VERSION, TrainJobSpec
from kubetune.controller.reconcile import KUEUE_QUEUE_LABEL, MAX_NAME_LENGTH
from kubetune.errors import ConfigError
from kubetune.spec.base import StrictModel
from kubetune.spec.job import JobSpec


class KubernetesJobOptions(StrictModel):
    """How and where a job runs on Kubernetes (the parts a job spec does not say)."""

    runtime: str = Field(description="Name of the (Cluster)TrainingRuntime, e.g. 'smollm2-135m-lora'.")
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    num_nodes: int | None = Field(default=None, ge=1)
    num_proc_per_node: int | None = Field(default=None, ge=1)
    resources_per_node: dict[str, Any] | None = Field(default=None, description="core/v1 ResourceRequirements.")
    image: str | None = None
    env: dict[str, str] = Field(default_factory=dict, description="Extra env vars of the trainer containers.")
    model_secret: str | None = Field(default=None, description="Secret with the model initializer's credentials.")
    dataset_secret: str | None = Field(default=None, description="Secret with the dataset initializer's credentials.")
    queue_name: str | None = Field(default=None, description="Kueue LocalQueue; the job waits for admission.")
    suspend: bool = False
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    service_account_name: str | None = None


def generate_name(prefix: str = "kt") -> str:
    """A random TrainJob name, ``kt-`` plus 10 hex digits."""
    return f"{prefix}-{secrets.token_hex(5)}"


def _split_source(path: str | None, field: str) -> str | None:
    """The storage URI for an initializer, or None when the path is empty."""
    if path is None:
        return None
    if "://" not in path:
        raise ConfigError(
            f"{field}: {path!r} is a local path, which a cluster cannot read; use an hf://, s3://, https:// "
            "or pkg:// URI (the initializer fetches it onto the job's volume)"
        )
    return path


def render_trainjob(spec: JobSpec, options: KubernetesJobOptions, namespace: str, name: str | None = None) -> dict:
    """The TrainJob manifest for ``spec`` run as ``options`` say.

    Args:
        spec: the validated job spec (its ``output_dir`` is ignored: runs live on the job's volume).
        options: runtime, scale, queue and pod settings.
        namespace: where the TrainJob is created.
        name: TrainJob name (default: ``spec.name``, else a random ``kt-...`` name).

    Raises:
        ConfigError: the name is too long, or a model/dataset path is local.
    """
    name = name or spec.name or generate_name()
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"name: {name!r} is longer than {MAX_NAME_LENGTH} characters")
    llm = spec.trainer.model_dump(mode="json", exclude_unset=True)
    initializer: dict[str, Any] = {}
    for step, section, secret in (
        ("model", spec.trainer.model, options.model_secret),
        ("dataset", spec.trainer.dataset, options.dataset_secret),
    ):
        uri = _split_source(section.path, f"trainer.{step}.path")
        if uri is not None:
            llm[step].pop("path")
            if not llm[step]:
                del llm[step]
            initializer[step] = {"storageUri": uri}
        if secret is not None:
            initializer.setdefault(step, {})["secretRef"] = {"name": secret}
    trainer: dict[str, Any] = {"llmConfig": llm}
    for key, value in (
        ("image", options.image),
        ("numNodes", options.num_nodes),
        ("numProcPerNode", options.num_proc_per_node),
        ("resourcesPerNode", options.resources_per_node),
    ):
        if value is not None:
            trainer[key] = value
    if options.env:
        trainer["env"] = [{"name": key, "value": value} for key, value in options.env.items()]
    body: dict[str, Any] = {
        "runtimeRef": {"name": options.runtime, "kind": options.runtime_kind},
        "trainer": trainer,
        "suspend": options.suspend,
    }
    if initializer:
        body["initializer"] = initializer
    if options.active_deadline_seconds:
        body["activeDeadlineSeconds"] = options.active_deadline_seconds
    if options.labels:
        body["labels"] = dict(options.labels)
    if options.annotations:
        body["annotations"] = dict(options.annotations)
    overrides = {
        key: value
        for key, value in (
            ("nodeSelector", options.node_selector),
            ("tolerations", options.tolerations),
            ("serviceAccountName", options.service_account_name),
        )
        if value
    }
    if overrides:
        body["podOverrides"] = overrides
    TrainJobSpec.model_validate(body)  # the controller's own model: what it accepts, we send
    labels = {**options.labels, **({KUEUE_QUEUE_LABEL: options.queue_name} if options.queue_name else {})}
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": "TrainJob", "metadata": metadata, "spec": body}
