"""The pure reconciler: a TrainJob and its runtime in, the desired Kubernetes objects out.

Nothing here talks to a cluster. :func:`reconcile` is given everything it needs (the TrainJob,
the runtime object, the keys of the Secrets that exist, the JobSet if one exists) and returns
the objects to server-side apply, in order: the job's config (ConfigMap), the shared workspace
(PVC), an optional coscheduling PodGroup, the trainer's progress access (a ServiceAccount, a Role
allowing ``get``/``patch`` of this TrainJob's ``status`` and nothing else, their RoleBinding), and
the JobSet. Every object but the workspace carries an owner reference to the TrainJob, so deleting
the TrainJob deletes them; the workspace holds the trained model and stays until it is deleted on
purpose.

The JobSet runs ``dataset-initializer`` first, then ``model-initializer`` (after the dataset is
Complete), then ``node``: ``numNodes`` indexed pods launched by torchrun (through
``kubetune.trainer.launch``, which keeps the trainer's preemption exit status; the node Job's pod
failure policy ignores that status and disruptions, see :func:`preemption_rules`). JobSet supports one
``dependsOn`` entry per replicated job, hence the chain. An initializer with no storage URI
(neither in the TrainJob nor in the runtime) is left out of the chain. A job that pushes its results
or registers its model (``output.push_to``, ``output.register_model``) ends with ``exporter``: one pod
after the nodes are Complete, ``python -m kubetune.exporter`` on the same volume; the JobSet succeeds
when it does.

Bad input raises :class:`InvalidTrainJob` with a condition reason; the caller then marks the
TrainJob Failed and creates nothing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetune.contracts.kubernetes import (
    API_VERSION,
    GROUP,
    KUEUE_PRIORITY_LABEL,
    KUEUE_QUEUE_LABEL,
    MAX_NAME_LENGTH,
    PODGROUP_LABEL,
    TRAINJOB_LABEL,
    TRAINJOB_NAME_ENV,
    TRAINJOB_NAMESPACE_ENV,
    TRAINJOB_PLURAL,
    workspace_claim,
)
from kubetune.contracts.run_dir import CONFIG_FILE_NAME, RunDir
from kubetune.contracts.types import EXPORTER_STEP
from kubetune.controller.api import (
    DATASET_INITIALIZER,
    MODEL_INITIALIZER,
    NODE,
    InitializerSource,
    RuntimeSpec,
    TrainJobSpec,
)
from kubetune.errors import PREEMPTED_EXIT_CODE, KubetuneError
from kubetune.spec.base import format_validation_error
from kubetune.spec.job import JobSpec
from kubetune.spec.trainer import LLMConfig, merge_llm_config

FIELD_MANAGER = "kubetune-controller"
KUEUE_PASSTHROUGH = (KUEUE_QUEUE_LABEL, KUEUE_PRIORITY_LABEL)
MASTER_PORT = 29500
CONFIG_DIR = "/etc/kubetune"
CONFIG_FILE = CONFIG_FILE_NAME
WORKSPACE_VOLUME = "workspace"
CONFIG_VOLUME = "kubetune-config"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# torchrun's options, with SIGTERM passed on to the workers and their preemption exit status kept.
LAUNCH_COMMAND = ("python", "-m", "kubetune.trainer.launch")
# How long a node pod has, after SIGTERM (suspend, Kueue preemption, drain), to checkpoint; a
# runtime template may set its own. See docs/reliability.md for measured checkpoint times.
NODE_GRACE_S = 120

# Set by the controller / torchrun; a user value would silently break the rendezvous.
RESERVED_ENV = frozenset(
    {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK"}
)
RESERVED_ENV_PREFIX = "PET_"
#: The node pods' progress reporting, which the exporter pod has no part in.
NODE_ONLY_ENV = frozenset({TRAINJOB_NAME_ENV, TRAINJOB_NAMESPACE_ENV})
#: Attempts of a failed exporter pod (a push resumes where the last attempt stopped).
EXPORTER_RETRIES = 3
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InvalidTrainJob(KubetuneError):
    """The TrainJob cannot be reconciled; ``reason`` is the Failed condition's reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Desired:
    """What the controller should apply for one TrainJob."""

    config_map: dict
    workspace: dict
    pod_group: dict | None
    progress_access: list[dict]
    jobset: dict

    def objects(self) -> list[dict]:
        """The objects in apply order (dependencies of the JobSet first)."""
        pod_group = [self.pod_group] if self.pod_group else []
        return [self.config_map, self.workspace, *pod_group, *self.progress_access, self.jobset]


def parse_trainjob_spec(trainjob: Mapping[str, Any]) -> TrainJobSpec:
    """Validate ``trainjob['spec']``; raise :class:`InvalidTrainJob` (reason ``InvalidSpec``) on error."""
    try:
        return TrainJobSpec.model_validate(trainjob.get("spec") or {})
    except ValidationError as err:
        raise InvalidTrainJob("InvalidSpec", f"invalid spec: {format_validation_error(err, 'spec')}") from None


def parse_runtime_spec(runtime: Mapping[str, Any]) -> RuntimeSpec:
    """Validate a runtime object's spec; raise :class:`InvalidTrainJob` (reason ``InvalidRuntime``)."""
    name = runtime.get("metadata", {}).get("name", "?")
    try:
        spec = RuntimeSpec.model_validate(runtime.get("spec") or {})
    except ValidationError as err:
        raise InvalidTrainJob("InvalidRuntime", f"runtime {name}: {format_validation_error(err, 'spec')}") from None
    jobs = [job.get("name") for job in spec.template.spec.get("replicatedJobs", [])]
    if NODE not in jobs:
        raise InvalidTrainJob("InvalidRuntime", f"runtime {name}: template.spec.replicatedJobs has no '{NODE}' job")
    return spec


def reconcile(
    trainjob: Mapping[str, Any],
    runtime: Mapping[str, Any] | None,
    secrets: Mapping[str, Collection[str]],
    existing_jobset: Mapping[str, Any] | None = None,
) -> Desired:
    """Compute the objects a TrainJob needs.

    Args:
        trainjob: the TrainJob object (``metadata`` with name, namespace, uid; ``spec``).
        runtime: the (Cluster)TrainingRuntime object ``spec.runtimeRef`` names, or None when
            it does not exist.
        secrets: the Secrets of the namespace that the job references: name -> key names.
            Only key names, never values, are needed.
        existing_jobset: the JobSet if it already exists (decides Kueue's initial suspend).

    Raises:
        InvalidTrainJob: unknown runtime, invalid spec or LLM config, reserved env var, missing
            Secret. Nothing should be created then.
    """
    spec = parse_trainjob_spec(trainjob)
    meta = trainjob["metadata"]
    if len(meta["name"]) > MAX_NAME_LENGTH:
        raise InvalidTrainJob(
            "InvalidName", f"metadata.name: at most {MAX_NAME_LENGTH} characters (pod hostnames derive from it)"
        )
    if runtime is None:
        raise InvalidTrainJob(
            "RuntimeNotFound", f"spec.runtimeRef: {spec.runtime_ref.kind} {spec.runtime_ref.name!r} does not exist"
        )
    runtime_spec = parse_runtime_spec(runtime)
    _check_env(spec.trainer.env, "spec.trainer.env")
    sources = _initializer_sources(spec, runtime_spec)
    secret_env = {step: _secret_env(source, secrets, step) for step, source in sources.items()}
    job_spec = _job_spec(meta["name"], spec, runtime_spec, initialized=set(sources))

    owner = _owner_reference(trainjob)
    labels = _labels(meta["name"], spec)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{meta['name']}-config", meta, owner, labels),
        "data": {CONFIG_FILE: yaml.safe_dump(job_spec.model_dump(mode="json"), sort_keys=False)},
    }
    claim = copy.deepcopy(runtime_spec.workspace.volume_claim_template)
    workspace = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(workspace_claim(meta["name"]), meta, None, labels),
        "spec": claim.get("spec", {}),
    }
    num_nodes = spec.trainer.num_nodes or runtime_spec.ml_policy.num_nodes
    pod_group = None
    if runtime_spec.pod_group_policy and runtime_spec.pod_group_policy.coscheduling:
        pod_group = {
            "apiVersion": "scheduling.x-k8s.io/v1alpha1",
            "kind": "PodGroup",
            "metadata": _meta(meta["name"], meta, owner, labels),
            "spec": {
                "minMember": num_nodes,
                "scheduleTimeoutSeconds": runtime_spec.pod_group_policy.coscheduling.schedule_timeout_seconds,
            },
        }
    reports_progress = spec.trainer.command is None and spec.trainer.args is None
    overridden = spec.pod_overrides is not None and spec.pod_overrides.service_account_name
    account = f"{meta['name']}-trainer" if reports_progress and not overridden else None
    progress_access = _progress_access(account, meta, owner, labels) if account else []
    exports = job_spec.trainer_kind == "builtin" and job_spec.trainer.output.wants_export
    jobset = _jobset(
        trainjob, spec, runtime_spec, sources, secret_env, num_nodes, owner, labels, pod_group, existing_jobset, exports
    )
    node_pod = next(job for job in jobset["spec"]["replicatedJobs"] if job["name"] == NODE)["template"]["spec"]
    if account:
        node_pod["template"]["spec"]["serviceAccountName"] = account
    return Desired(config_map, workspace, pod_group, progress_access, jobset)


def _progress_access(account: str, trainjob_meta: Mapping[str, Any], owner: dict, labels: dict[str, str]) -> list[dict]:
    """A ServiceAccount for the node pods that may read and patch this TrainJob's status, and nothing else."""
    name = trainjob_meta["name"]
    meta = _meta(account, trainjob_meta, owner, labels)
    rule = {
        "apiGroups": [GROUP],
        "resources": [f"{TRAINJOB_PLURAL}/status"],
        "resourceNames": [name],
        "verbs": ["get", "patch"],
    }
    subject = {"kind": "ServiceAccount", "name": account, "namespace": trainjob_meta["namespace"]}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": [rule]},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [subject],
        },
    ]


def _check_env(env: list[dict[str, Any]], field: str) -> None:
    for entry in env:
        name = entry.get("name", "")
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIX):
            raise InvalidTrainJob(
                "ReservedEnvVar", f"{field}: {name} is set by kubetune for torchrun and cannot be overridden"
            )


def _initializer_sources(spec: TrainJobSpec, runtime: RuntimeSpec) -> dict[str, InitializerSource]:
    """Merge each initializer's TrainJob fields over the runtime's; keep those with a storage URI."""
    sources = {}
    for step, job in (("dataset", DATASET_INITIALIZER), ("model", MODEL_INITIALIZER)):
        user = getattr(spec.initializer, step, None) if spec.initializer else None
        default = getattr(runtime.initializer, step, None) if runtime.initializer else None
        merged = InitializerSource()
        for layer in (default, user):
            if layer is None:
                continue
            merged.storage_uri = layer.storage_uri or merged.storage_uri
            merged.env = [*merged.env, *layer.env]
            merged.secret_ref = layer.secret_ref or merged.secret_ref
        if merged.storage_uri:
            sources[job] = merged
    return sources


def _secret_env(source: InitializerSource, secrets: Mapping[str, Collection[str]], step: str) -> list[dict]:
    """One env var per key of the referenced Secret, each a ``secretKeyRef`` (values never copied)."""
    if source.secret_ref is None:
        return []
    name = source.secret_ref.name
    field = f"spec.initializer.{step.removesuffix('-initializer')}.secretRef"
    if name not in secrets:
        raise InvalidTrainJob("SecretNotFound", f"{field}: Secret {name!r} does not exist in this namespace")
    env = []
    for key in sorted(secrets[name]):
        if not _ENV_NAME.match(key):
            raise InvalidTrainJob(
                "InvalidSecret", f"{field}: key {key!r} of Secret {name!r} is not a valid environment variable name"
            )
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}})
    return env


def _job_spec(name: str, spec: TrainJobSpec, runtime: RuntimeSpec, initialized: set[str]) -> JobSpec:
    """The trainer's job spec: runtime LLM defaults under the TrainJob's, validated with pydantic.

    Where an initializer fetches the model (dataset), the trainer must read ``<run>/model``
    (``<run>/dataset``), so a path in the LLM config would contradict it.
    """
    raw = merge_llm_config(runtime.llm_config or {}, spec.trainer.llm_config or {})
    try:
        llm = LLMConfig.model_validate(raw)
    except ValidationError as err:
        raise InvalidTrainJob(
            "InvalidLLMConfig", f"invalid LLM config: {format_validation_error(err, 'spec.trainer.llmConfig')}"
        ) from None
    for job, section in ((MODEL_INITIALIZER, llm.model), (DATASET_INITIALIZER, llm.dataset)):
        step = job.removesuffix("-initializer")
        if job in initialized and section.path is not None:
            raise InvalidTrainJob(
                "InvalidLLMConfig",
                f"spec.trainer.llmConfig.{step}.path ({section.path}) conflicts with the {step} initializer's "
                f"storageUri; leave the path empty so the trainer reads <run>/{step}",
            )
    return JobSpec(name=name, trainer=llm, output_dir=runtime.workspace.mount_path)


def _owner_reference(trainjob: Mapping[str, Any]) -> dict:
    meta = trainjob["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(name: str, spec: TrainJobSpec) -> dict[str, str]:
    return {**(spec.labels or {}), TRAINJOB_LABEL: name}


def _meta(name: str, trainjob_meta: Mapping[str, Any], owner: dict | None, labels: dict[str, str]) -> dict:
    meta = {"name": name, "namespace": trainjob_meta["namespace"], "labels": dict(labels)}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return meta


def _jobset(
    trainjob: Mapping[str, Any],
    spec: TrainJobSpec,
    runtime: RuntimeSpec,
    sources: dict[str, InitializerSource],
    secret_env: dict[str, list[dict]],
    num_nodes: int,
    owner: dict,
    labels: dict[str, str],
    pod_group: dict | None,
    existing_jobset: Mapping[str, Any] | None,
    exports: bool = False,
) -> dict:
    meta = trainjob["metadata"]
    name = meta["name"]
    trainjob_labels = meta.get("labels") or {}
    jobset_labels = {**labels, **{key: trainjob_labels[key] for key in KUEUE_PASSTHROUGH if key in trainjob_labels}}
    template = copy.deepcopy(runtime.template.spec)
    jobs = {job["name"]: job for job in template.pop("replicatedJobs")}
    chain = [job for job in (DATASET_INITIALIZER, MODEL_INITIALIZER) if job in sources]
    mount = {"name": WORKSPACE_VOLUME, "mountPath": runtime.workspace.mount_path}
    replicated = []
    previous = None
    for job_name in chain:
        source = sources[job_name]
        step = job_name.removesuffix("-initializer")
        if job_name not in jobs:
            raise InvalidTrainJob(
                "InvalidRuntime", f"runtime {spec.runtime_ref.name}: the job needs a '{job_name}' replicated job"
            )
        job = jobs[job_name]
        container = _container(job, job_name, spec.runtime_ref.name)
        target = RunDir(Path(runtime.workspace.mount_path)).source(step)
        container["args"] = ["--uri", source.storage_uri, "--target", str(target)]
        container["env"] = [*container.get("env", []), *source.env, *secret_env[job_name]]
        container["volumeMounts"] = [*container.get("volumeMounts", []), mount]
        _finish_job(job, name, spec, runtime, labels, pod_group=None)
        if previous:
            job["dependsOn"] = [{"name": previous, "status": "Complete"}]
        replicated.append(job)
        previous = job_name

    node = jobs[NODE]
    container = _container(node, NODE, spec.runtime_ref.name)
    trainer = spec.trainer
    num_proc = trainer.num_proc_per_node or runtime.ml_policy.torch.num_proc_per_node
    if trainer.image:
        container["image"] = trainer.image
    if trainer.command is not None:
        container["command"] = trainer.command
        container["args"] = trainer.args or []
    elif trainer.args is not None:
        container["args"] = trainer.args
    else:
        container["command"] = list(LAUNCH_COMMAND)
        container["args"] = [
            "-m",
            "kubetune.trainer",
            "--config",
            f"{CONFIG_DIR}/{CONFIG_FILE}",
            "--run-dir",
            runtime.workspace.mount_path,
        ]
        # where rank 0 reports its progress record (kubetune.trainer.status_report)
        container["env"] = [
            *container.get("env", []),
            {"name": TRAINJOB_NAME_ENV, "value": name},
            {"name": TRAINJOB_NAMESPACE_ENV, "value": meta["namespace"]},
        ]
    torch_env = [
        {"name": "PET_NNODES", "value": str(num_nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": str(num_proc)},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
        {"name": "PET_MASTER_ADDR", "value": f"{name}-{NODE}-0-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": str(MASTER_PORT)},
    ]
    container["env"] = [*container.get("env", []), *trainer.env, *torch_env]
    if trainer.resources_per_node:
        container["resources"] = copy.deepcopy(trainer.resources_per_node)
    container["ports"] = [{"name": "rendezvous", "containerPort": MASTER_PORT}]
    container["volumeMounts"] = [
        *container.get("volumeMounts", []),
        mount,
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    node["replicas"] = 1
    job_template = node["template"].setdefault("spec", {})
    job_template.update(
        {"parallelism": num_nodes, "completions": num_nodes, "completionMode": "Indexed", "backoffLimit": 0}
    )
    if spec.active_deadline_seconds:
        job_template["activeDeadlineSeconds"] = spec.active_deadline_seconds
    _finish_job(node, name, spec, runtime, labels, pod_group=pod_group)
    pod_spec = node["template"]["spec"]["template"]["spec"]
    pod_spec["volumes"].append({"name": CONFIG_VOLUME, "configMap": {"name": f"{name}-config"}})
    pod_spec.setdefault("terminationGracePeriodSeconds", NODE_GRACE_S)
    if pod_spec["restartPolicy"] == "Never":  # a pod failure policy needs it
        job_template["podFailurePolicy"] = {"rules": preemption_rules(NODE)}
    if previous:
        node["dependsOn"] = [{"name": previous, "status": "Complete"}]
    replicated.append(node)
    builtin_launch = trainer.command is None and trainer.args is None
    if builtin_launch and exports:
        replicated.append(_exporter_job(node, runtime.workspace.mount_path))

    jobset_spec = {
        **template,
        "replicatedJobs": replicated,
        "network": {"enableDNSHostnames": True, "subdomain": name, "publishNotReadyAddresses": True},
        "successPolicy": {"operator": "All", "targetReplicatedJobs": [replicated[-1]["name"]]},
    }
    if spec.max_restarts:
        # JobSet recreates every job of the set; the trainer then resumes from its newest checkpoint.
        jobset_spec["failurePolicy"] = {"maxRestarts": spec.max_restarts}
    suspend = _jobset_suspend(spec, trainjob_labels, existing_jobset)
    if suspend is not None:
        jobset_spec["suspend"] = suspend
    metadata = _meta(name, meta, owner, jobset_labels)
    if spec.annotations:
        metadata["annotations"] = dict(spec.annotations)
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": metadata, "spec": jobset_spec}


def _exporter_job(node: dict, workspace: str) -> dict:
    """The ``exporter`` replicated job: one pod after the trainer, ``python -m kubetune.exporter`` on the shared
    volume (push ``output.push_to``, register ``output.register_model``).

    It is the node job's pod (image, volumes, config, credentials env, pod overrides) without the GPUs, the
    torchrun environment, the rendezvous port and the gang label; a failed push is retried (it resumes).
    """
    job = copy.deepcopy(node)
    job["name"] = EXPORTER_STEP
    job["dependsOn"] = [{"name": NODE, "status": "Complete"}]
    job_template = job["template"]["spec"]
    for key in ("parallelism", "completions", "completionMode", "podFailurePolicy"):
        job_template.pop(key, None)
    job_template["backoffLimit"] = EXPORTER_RETRIES
    pod = job_template["template"]
    pod.get("metadata", {}).get("labels", {}).pop(PODGROUP_LABEL, None)
    pod["spec"].pop("schedulerName", None)
    container = _container(job, NODE, "")
    container["name"] = EXPORTER_STEP
    container["command"] = ["python", "-m", "kubetune.exporter"]
    container["args"] = ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--run-dir", workspace]
    container["env"] = [
        entry
        for entry in container.get("env", [])
        if not entry["name"].startswith(RESERVED_ENV_PREFIX) and entry["name"] not in NODE_ONLY_ENV
    ]
    for key in ("ports", "resources"):
        container.pop(key, None)
    return job


def preemption_rules(container: str) -> list[dict]:
    """Pod failure policy rules that keep a preemption from counting as a failure.

    A node pod whose trainer checkpointed and exited with :data:`PREEMPTED_EXIT_CODE`, or any pod
    evicted for a disruption (drain, spot reclaim, Kueue/scheduler preemption: condition
    ``DisruptionTarget``), is ignored: the Job neither counts it against ``backoffLimit`` nor
    fails, so the JobSet's ``maxRestarts`` is untouched, and a replacement pod resumes from the
    checkpoint on the shared volume.
    """
    return [
        {
            "action": "Ignore",
            "onExitCodes": {"containerName": container, "operator": "In", "values": [PREEMPTED_EXIT_CODE]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]


def _jobset_suspend(
    spec: TrainJobSpec, trainjob_labels: Mapping[str, str], existing_jobset: Mapping[str, Any] | None
) -> bool | None:
    """The JobSet's ``suspend``; None leaves the field to Kueue (it admits by unsuspending)."""
    if KUEUE_QUEUE_LABEL not in trainjob_labels:
        return spec.suspend
    if spec.suspend or existing_jobset is None:
        return True
    return None


def _container(job: dict, container_name: str, runtime_name: str) -> dict:
    containers = job["template"]["spec"]["template"]["spec"]["containers"]
    for container in containers:
        if container["name"] == container_name:
            return container
    raise InvalidTrainJob(
        "InvalidRuntime", f"runtime {runtime_name}: job '{job['name']}' has no container named '{container_name}'"
    )


def _finish_job(
    job: dict, name: str, spec: TrainJobSpec, runtime: RuntimeSpec, labels: dict, pod_group: dict | None
) -> None:
    """Apply pod overrides, labels, the workspace volume and the gang label to one replicated job."""
    pod_template = job["template"]["spec"]["template"]
    pod_meta = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**pod_meta.get("labels", {}), **labels}
    pod_spec = pod_template["spec"]
    if pod_group is not None:
        pod_meta["labels"][PODGROUP_LABEL] = pod_group["metadata"]["name"]
        coscheduling = runtime.pod_group_policy.coscheduling
        if coscheduling.scheduler_name:
            pod_spec["schedulerName"] = coscheduling.scheduler_name
    if spec.annotations:
        pod_meta["annotations"] = {**pod_meta.get("annotations", {}), **spec.annotations}
    pod_spec.setdefault("restartPolicy", "Never")
    pod_spec["volumes"] = [
        *pod_spec.get("volumes", []),
        {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": workspace_claim(name)}},
    ]
    overrides = spec.pod_overrides
    if overrides is None:
        return
    if overrides.node_selector:
        pod_spec["nodeSelector"] = {**pod_spec.get("nodeSelector", {}), **overrides.node_selector}
    if overrides.tolerations:
        pod_spec["tolerations"] = [*pod_spec.get("tolerations", []), *overrides.tolerations]
    if overrides.volumes:
        pod_spec["volumes"].extend(overrides.volumes)
    if overrides.volume_mounts:
        for container in pod_spec["containers"]:
            container["volumeMounts"] = [*container.get("volumeMounts", []), *overrides.volume_mounts]
    if overrides.service_account_name:
        pod_spec["serviceAccountName"] = overrides.service_account_name
