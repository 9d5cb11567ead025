"""Turn a job spec into a TrainJob manifest (pure; no cluster needed).

Only what the user said travels in the TrainJob, so the cluster's runtime fills the rest on the
controller side: the LLM config carries the fields the user set (pydantic's ``exclude_unset``)
and resources only when the user gave some. The scale (``numNodes``, ``numProcPerNode``) is
always written, resolved against the runtime, so the TrainJob records what runs.

Model and dataset paths that are URIs (``hf://``, ``s3://``, ``pkg://``, ``https://``) become
initializer storage URIs; the trainer then reads ``<run>/model`` and ``<run>/dataset`` on the
shared volume. A local path cannot be reached from a cluster and is refused. An initializer
with more than a URI (revision, patterns, S3 endpoint, secret references) is handed its whole
spec in ``KUBETUNE_INITIALIZER_SPEC``; each Kubernetes Secret reference becomes a
``secretKeyRef`` env var named as :meth:`~kubetune.spec.initializer.SecretRef.env_var_name` says.

A custom trainer's function travels in a ConfigMap ``<name>-function`` (a job spec holding the
pickled function) mounted into the pods; the node runs ``torchrun -m
kubetune.backends.function_worker`` on it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal

import yaml
from pydantic import Field

from kubetune.contracts.kubernetes import API_VERSION, KUEUE_QUEUE_LABEL, MAX_NAME_LENGTH, TRAINJOB_LABEL
from kubetune.contracts.run_dir import SOURCE_KINDS
from kubetune.controller.api import TrainJobSpec
from kubetune.controller.reconcile import LAUNCH_COMMAND
from kubetune.errors import ConfigError
from kubetune.runtimes.defaults import resources_to_kubernetes
from kubetune.spec.base import StrictModel
from kubetune.spec.initializer import INITIALIZER_SPEC_ENV, InitializerSpec, SecretRef
from kubetune.spec.job import JobSpec

FUNCTION_VOLUME = "kubetune-function"
FUNCTION_DIR = "/etc/kubetune-function"
FUNCTION_FILE = "job.yaml"


class KubernetesJobOptions(StrictModel):
    """Cluster settings of every job a :class:`~kubetune.backends.kubernetes.KubernetesBackend` submits
    (the parts a job spec does not say)."""

    default_runtime: str | None = Field(default=None, description="Runtime of jobs that name none.")
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    image: str | None = Field(default=None, description="Image of the node containers (default: the runtime's).")
    queue_name: str | None = Field(default=None, description="Kueue LocalQueue; jobs wait for admission.")
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


def _remote_uri(uri: str, field: str) -> str:
    if "://" not in uri or uri.startswith("file://"):
        raise ConfigError(
            f"{field}: {uri!r} is a local path, which a cluster cannot read; use an hf://, s3://, https:// "
            "or pkg:// URI (the initializer fetches it onto the job's volume)"
        )
    return uri


def secret_env(refs: list[SecretRef], field: str) -> list[dict[str, Any]]:
    """One ``secretKeyRef`` env var per Kubernetes secret reference (named :meth:`SecretRef.env_var_name`);
    ``env`` references are left to the container's environment.

    Raises:
        ConfigError: a ``file`` reference (a cluster cannot read the submitter's files).
    """
    env = []
    for ref in refs:
        if ref.file is not None:
            raise ConfigError(f"{field}: a file secret reference cannot be read on a cluster; use kubernetes")
        if ref.kubernetes is not None:
            key_ref = {"name": ref.kubernetes.name, "key": ref.kubernetes.key}
            env.append({"name": ref.env_var_name(), "valueFrom": {"secretKeyRef": key_ref}})
    return env


def _initializer(source: InitializerSpec, field: str) -> dict[str, Any]:
    """A TrainJob initializer source for a job-spec initializer."""
    entry: dict[str, Any] = {"storageUri": _remote_uri(source.storage_uri, f"{field}.storage_uri")}
    env = secret_env(source.secret_refs(), field)
    settings = source.model_dump(mode="json", exclude_unset=True, exclude={"storage_uri", "kind"})
    if settings:
        full = source.model_dump(mode="json", exclude_unset=True)
        env.insert(0, {"name": INITIALIZER_SPEC_ENV, "value": json.dumps(full, sort_keys=True)})
    if env:
        entry["env"] = env
    return entry


def function_config_map(spec: JobSpec, name: str, namespace: str, owner_uid: str) -> dict:
    """The ConfigMap carrying a custom trainer's pickled function, owned by the TrainJob ``name``."""
    assert spec.function is not None
    document = {"name": name, "trainer_kind": "custom", "function": spec.function.model_dump(mode="json")}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{name}-function",
            "namespace": namespace,
            "labels": {TRAINJOB_LABEL: name},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "TrainJob",
                    "name": name,
                    "uid": owner_uid,
                    "controller": False,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {FUNCTION_FILE: yaml.safe_dump(document, sort_keys=False)},
    }


def render_trainjob(
    spec: JobSpec,
    resolved: JobSpec,
    options: KubernetesJobOptions,
    namespace: str,
    workspace: str = "/workspace",
) -> dict:
    """The TrainJob manifest for ``spec``.

    Args:
        spec: the job as the user gave it (its ``output_dir`` is ignored: runs live on the job's volume).
        resolved: ``spec`` with its runtime applied (:func:`kubetune.runtimes.apply_runtime`): the scale.
        options: image, queue and pod settings of the backend.
        namespace: where the TrainJob is created.
        workspace: the runtime's workspace mount path (the run directory in the pods).

    Raises:
        ConfigError: no runtime, a name that is too long, a local model/dataset path, a file secret reference.
    """
    name = spec.name or generate_name()
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"name: {name!r} is longer than {MAX_NAME_LENGTH} characters")
    runtime = resolved.runtime
    if runtime is None:
        raise ConfigError("runtime: a job on Kubernetes needs a runtime (see list_runtimes())")
    initializer: dict[str, Any] = {}
    for step in SOURCE_KINDS:
        source = getattr(spec.initializer, step) if spec.initializer is not None else None
        if source is not None:
            initializer[step] = _initializer(source, f"initializer.{step}")
    trainer: dict[str, Any] = {"numNodes": resolved.num_nodes, "numProcPerNode": resolved.procs_per_node}
    pod_volumes: dict[str, list] = {}
    if spec.trainer_kind == "builtin":
        llm = spec.trainer.model_dump(mode="json", exclude_unset=True)
        for step in SOURCE_KINDS:
            section = getattr(spec.trainer, step)
            if section.path is None:
                continue
            uri = _remote_uri(section.path, f"trainer.{step}.path")
            if step in initializer:
                raise ConfigError(f"trainer.{step}.path: give the {step} either here or as initializer.{step}")
            initializer[step] = {"storageUri": uri}
            llm[step].pop("path")
            if not llm[step]:
                del llm[step]
        trainer["llmConfig"] = llm
    else:
        trainer["command"] = list(LAUNCH_COMMAND)
        trainer["args"] = [
            "-m",
            "kubetune.backends.function_worker",
            "--config",
            f"{FUNCTION_DIR}/{FUNCTION_FILE}",
            "--run-dir",
            workspace,
        ]
        pod_volumes = {
            "volumes": [{"name": FUNCTION_VOLUME, "configMap": {"name": f"{name}-function"}}],
            "volumeMounts": [{"name": FUNCTION_VOLUME, "mountPath": FUNCTION_DIR, "readOnly": True}],
        }
    if "resources" in spec.model_fields_set:
        trainer["resourcesPerNode"] = resources_to_kubernetes(spec.resources.model_dump())
    if options.image:
        trainer["image"] = options.image
    env = [{"name": key, "value": value} for key, value in spec.env.items()]
    if spec.trainer_kind == "builtin":
        # The trainer (tracking) and the exporter step (push) read these credentials.
        credentials = secret_env(spec.trainer.tracking.secret_refs(), "trainer.tracking")
        credentials += secret_env(spec.trainer.output.push_secret_refs(), "trainer.output")
        env += list({entry["name"]: entry for entry in credentials}.values())  # a Secret key used twice: once
    if env:
        trainer["env"] = env
    body: dict[str, Any] = {
        "runtimeRef": {"name": runtime, "kind": options.runtime_kind},
        "trainer": trainer,
        "suspend": options.suspend,
    }
    if initializer:
        body["initializer"] = initializer
    if options.active_deadline_seconds:
        body["activeDeadlineSeconds"] = options.active_deadline_seconds
    if spec.max_restarts:
        body["maxRestarts"] = spec.max_restarts
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
            *pod_volumes.items(),
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
