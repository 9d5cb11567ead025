"""Apply a runtime to a job spec: the runtime's defaults go under the fields the user set.

The same rule on every backend (the Kubernetes controller applies it again on the cluster's
copy of the runtime): the runtime's LLM config is deep-merged under the job's, its scale and
resources are used where the job gives none, and its model becomes the job's model
initializer when the job names no model.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from kubetune.errors import ConfigError
from kubetune.runtimes.catalog import Runtime
from kubetune.spec.base import format_validation_error
from kubetune.spec.job import JobSpec
from kubetune.spec.trainer import merge_llm_config

GPU_RESOURCE = "nvidia.com/gpu"
_MEMORY = re.compile(r"^\d+(\.\d+)?([KMGT]i?)?$")


def apply_runtime(spec: JobSpec, runtime: Runtime) -> JobSpec:
    """``spec`` with ``runtime``'s defaults filled in under the fields the user set.

    - ``trainer`` (builtin jobs): the runtime's LLM config, deep-merged under the job's own
      (only the fields the user set count, so a default of the job's type never hides the
      runtime's value).
    - ``num_nodes``, ``procs_per_node``, ``resources``: the runtime's when the job sets none.
    - ``initializer.model``: the runtime's ``model_uri`` when the job names no model (no
      ``trainer.model.path`` and no model initializer).

    Raises:
        ConfigError: the merged spec is invalid (naming the field).
    """
    user = spec.model_dump(exclude_unset=True)
    fields = dict(user, runtime=runtime.name)
    if spec.trainer_kind == "builtin":
        fields["trainer"] = merge_llm_config(runtime.llm_config.model_dump(exclude_unset=True), user.get("trainer", {}))
    for key, default in (
        ("num_nodes", runtime.num_nodes),
        ("procs_per_node", runtime.procs_per_node),
        ("resources", resources_from_kubernetes(runtime.resources_per_node)),
    ):
        fields.setdefault(key, default)
    names_model = spec.trainer.model.path is not None or (spec.initializer is not None and spec.initializer.model)
    if runtime.model_uri is not None and not names_model:
        fields["initializer"] = {**user.get("initializer", {}), "model": {"storage_uri": runtime.model_uri}}
    try:
        return JobSpec.model_validate(fields)
    except ValidationError as err:
        raise ConfigError(f"job with runtime {runtime.name!r} is invalid: {format_validation_error(err)}") from None


def resources_from_kubernetes(requirements: dict[str, Any]) -> dict[str, Any]:
    """A container's ``ResourceRequirements`` as job-spec resources (``cpu``, ``memory``, ``gpu``).

    CPU and memory come from the requests (else the limits), GPUs from ``nvidia.com/gpu``.
    Quantities the job spec cannot express (e.g. ``1e9`` bytes) are left out.
    """
    requests, limits = requirements.get("requests") or {}, requirements.get("limits") or {}
    resources: dict[str, Any] = {}
    cpu = requests.get("cpu", limits.get("cpu"))
    if cpu is not None:
        text = str(cpu)
        resources["cpu"] = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    memory = requests.get("memory", limits.get("memory"))
    if memory is not None and _MEMORY.match(str(memory)):
        resources["memory"] = str(memory)
    gpu = limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE))
    if gpu is not None:
        resources["gpu"] = int(gpu)
    return resources


def resources_to_kubernetes(resources: dict[str, Any]) -> dict[str, Any]:
    """Job-spec resources as a container's ``ResourceRequirements`` (GPUs and memory also as limits)."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if resources.get("cpu") is not None:
        requests["cpu"] = f"{round(resources['cpu'] * 1000)}m"
    if resources.get("memory") is not None:
        requests["memory"] = limits["memory"] = resources["memory"]
    if resources.get("gpu"):
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = resources["gpu"]
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}
