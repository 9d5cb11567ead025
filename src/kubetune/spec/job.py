"""The job specification: one typed, validated description of a fine-tuning job.

A job file (``kubetune train -f job.yaml``) is this model written as YAML. The SDK's
``TrainerClient.train(...)`` builds the same model, so validation happens once, at the edge,
whatever the backend.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from kubetune.contracts.kubernetes import DNS_LABEL_MAX
from kubetune.contracts.run_dir import SOURCE_KINDS
from kubetune.errors import ConfigError
from kubetune.spec.base import StrictModel, read_yaml, validate_config
from kubetune.spec.dataset_split import split_from_uri
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer
from kubetune.spec.trainer import LLMConfig

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TrainerKind = Literal["builtin", "custom"]


class JobInitializers(StrictModel):
    """What to fetch into the run directory before training (``<run>/model``, ``<run>/dataset``).

    Each entry is a full initializer spec, or just its storage URI as a string
    (``model: hf://HuggingFaceTB/SmolLM2-135M-Instruct``).
    """

    model: ModelInitializer | None = None
    dataset: DatasetInitializer | None = None

    @field_validator("model", "dataset", mode="before")
    @classmethod
    def _uri_shorthand(cls, value: object) -> object:
        return {"storage_uri": value} if isinstance(value, str) else value


class FunctionSpec(StrictModel):
    """A user's function shipped by value, run on every worker of a custom-trainer job.

    ``payload`` is base64 of ``cloudpickle.dumps((func, kwargs))``; it only loads in the same
    Python minor version, which ``python_version`` records so a mismatch fails clearly.
    """

    name: str = Field(description="The function's qualified name (for display).")
    payload: str = Field(min_length=1, description="base64 cloudpickle of (function, keyword arguments).")
    python_version: str = Field(default=f"{sys.version_info.major}.{sys.version_info.minor}", pattern=r"^\d+\.\d+$")


#: The Kubernetes resource name of an NVIDIA GPU, accepted as another name of ``gpu``.
NVIDIA_GPU_KEY = "nvidia.com/gpu"


class ResourcesSpec(StrictModel):
    """What each node asks for. Locally, ``gpu`` is checked against this machine and ``cpu``
    sets each worker's thread count; on Kubernetes these become container requests.

    ``nvidia.com/gpu`` (the Kubernetes resource name) is accepted for ``gpu``.
    """

    cpu: float | None = Field(default=None, gt=0, description="CPU cores per node.")
    memory: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?([KMGT]i?)?$", description="e.g. 16Gi.")
    gpu: int = Field(default=0, ge=0, description="GPUs per node (also accepted as nvidia.com/gpu).")

    @model_validator(mode="before")
    @classmethod
    def _gpu_alias(cls, data: Any) -> Any:
        return canonical_resources(data) if isinstance(data, dict) else data


def canonical_resources(resources: dict[str, Any]) -> dict[str, Any]:
    """``resources`` with ``nvidia.com/gpu`` under its kubetune name ``gpu``.

    Raises:
        ValueError: both names are given with different counts.
    """
    if NVIDIA_GPU_KEY not in resources:
        return dict(resources)
    out = {key: value for key, value in resources.items() if key != NVIDIA_GPU_KEY}
    gpus = resources[NVIDIA_GPU_KEY]
    if "gpu" in out and str(out["gpu"]) != str(gpus):
        raise ValueError(f"gpu ({out['gpu']}) and {NVIDIA_GPU_KEY} ({gpus}) disagree; give one")
    out["gpu"] = gpus
    return out


class JobSpec(StrictModel):
    """A fine-tuning job: its name, runtime, initializers, trainer, shape and where results go."""

    name: str | None = Field(default=None, description="Job name (lowercase DNS label).")
    runtime: str | None = Field(default=None, description="Name of a runtime from the catalog.")
    initializer: JobInitializers | None = None
    trainer_kind: TrainerKind = Field(
        default="builtin", description="'builtin': the LLM Trainer (trainer); 'custom': a function."
    )
    trainer: LLMConfig = Field(default_factory=LLMConfig)
    function: FunctionSpec | None = Field(default=None, description="The function of a custom trainer.")
    num_nodes: int = Field(default=1, ge=1, description="Nodes (torchrun agents).")
    procs_per_node: int = Field(default=1, ge=1, description="Worker processes per node.")
    max_restarts: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Times the job's nodes are all started again after a worker fails; the LLM Trainer resumes "
        "from its newest checkpoint. One more failure ends the job Failed with the last error.",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Per-node resources.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for workers (not for secrets)."
    )
    output_dir: str | None = Field(
        default=None, description="Run directory; relative paths are relative to the job file."
    )

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > DNS_LABEL_MAX or not _NAME.match(value)):
            raise ValueError(f"must be a lowercase DNS label: a-z, 0-9 and '-', at most {DNS_LABEL_MAX} characters")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @model_validator(mode="after")
    def _dataset_split_in_uri(self) -> JobSpec:
        """``initializer.dataset: hf://org/name?split=train[:3000]`` fetches ``hf://org/name`` and trains on
        that split (``trainer.dataset.split``)."""
        source = self.initializer.dataset if self.initializer is not None else None
        if source is None:
            return self
        uri, split = split_from_uri(source.storage_uri)
        if split is None:
            return self
        given = self.trainer.dataset.split
        if given not in (None, split):
            raise ValueError(
                f"initializer.dataset.storage_uri says split {split!r} but trainer.dataset.split is {given!r}"
            )
        self.initializer.dataset = source.model_copy(update={"storage_uri": uri})
        self.trainer.dataset = self.trainer.dataset.model_copy(update={"split": split})
        return self

    @model_validator(mode="after")
    def _function_matches_kind(self) -> JobSpec:
        if self.trainer_kind == "custom" and self.function is None:
            raise ValueError("trainer_kind 'custom' needs a function")
        if self.trainer_kind == "builtin" and self.function is not None:
            raise ValueError("a function is only used with trainer_kind 'custom'")
        return self


def require_sources(spec: JobSpec, runtime: str | None = None, runtime_fetches: Collection[str] = ()) -> None:
    """A builtin job needs a model and a dataset: a trainer path, an initializer of the job, or its runtime's.

    Args:
        spec: the job (runtime defaults already applied).
        runtime: the runtime's name, when its initializers count (Kubernetes).
        runtime_fetches: the sources (``model``, ``dataset``) the runtime's initializers fetch.

    Raises:
        ConfigError: ``trainer.<model|dataset>.path`` is missing and nothing fetches it.
    """
    if spec.trainer_kind != "builtin":
        return
    for kind in SOURCE_KINDS:
        fetched = spec.initializer is not None and getattr(spec.initializer, kind) is not None
        if getattr(spec.trainer, kind).path is None and not fetched and kind not in runtime_fetches:
            where = f"runtime {runtime!r} has no {kind} initializer" if runtime else f"no {kind} initializer"
            raise ConfigError(f"trainer.{kind}.path: no {kind} given and {where}")


def load_job_file(path: str | Path) -> JobSpec:
    """Read and validate a job YAML file.

    Relative ``output_dir``, ``trainer.model.path``, ``trainer.dataset.path``,
    ``trainer.evaluation.file`` and initializer ``storage_uri`` paths are resolved against the file's
    folder, so a job file works from any working directory.

    Raises:
        ConfigError: the file is missing, empty, not YAML, or a field is unknown or invalid.
    """
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the job file is empty (a job needs at least a trainer or a runtime)")
    spec = validate_config(JobSpec, data, source=f"job file {path}")
    base = path.resolve().parent
    if spec.output_dir is not None:
        spec.output_dir = str(_anchor(spec.output_dir, base))
    for section in (spec.trainer.model, spec.trainer.dataset):
        if section.path is not None and "://" not in section.path:
            section.path = str(_anchor(section.path, base))
    evaluation = spec.trainer.evaluation
    if evaluation is not None and "://" not in evaluation.file:
        evaluation.file = str(_anchor(evaluation.file, base))
    if spec.initializer is not None:
        for source in (spec.initializer.model, spec.initializer.dataset):
            if source is not None and "://" not in source.storage_uri:
                source.storage_uri = str(_anchor(source.storage_uri, base))
    return spec


def write_job_file(spec: JobSpec, path: Path) -> Path:
    """Write ``spec`` to ``path`` (a run's ``output/config.yaml``) atomically; returns the path.

    The spec holds secret references only, never values, so the file is safe to keep.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _anchor(value: str, base: Path) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else base / candidate
