"""The types the SDK and the backends share: what users pass to ``TrainerClient`` and what it returns.

Plain dataclasses with no behaviour beyond light validation. Backends build and return these
and the client re-exports them (``kubetune.client.Job``...), so no backend imports the client.
The job-spec types in the annotations are imported for type checkers only, so this module
stays importable from every layer, ``spec`` included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.contracts.progress import Progress
from kubetune.contracts.run_dir import RunDir

if TYPE_CHECKING:
    from kubetune.spec.initializer import DatasetInitializer, ModelInitializer
    from kubetune.spec.trainer import LLMConfig


class JobStatus(str, Enum):
    """A job's lifecycle: Created → Initializing → Running → Complete | Failed | Cancelled.

    ``Suspended``: the workers checkpointed and stopped (``suspend_job``, or a preemption); the
    job continues from that checkpoint on ``resume_job``. It is not terminal.
    """

    CREATED = "Created"
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    COMPLETE = "Complete"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for Complete, Failed and Cancelled: the job will not change any more."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED})


#: The step after the trainer that pushes the results and registers the model (a local supervisor step, a
#: replicated job of the JobSet on Kubernetes).
EXPORTER_STEP = "exporter"


class StepStatus(str, Enum):
    """The state of one step of a job (an initializer or a node)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass
class BuiltinTrainer:
    """Run kubetune's LLM Trainer with ``config`` on ``num_nodes`` x ``procs_per_node`` workers.

    Fields left ``None`` (and config fields left unset) take the runtime's defaults, else 1.

    Args:
        config: the LLM Trainer's typed config (model, dataset, method, training loop).
        num_nodes: torchrun agents (machines on a cluster; local processes on a laptop).
        procs_per_node: worker processes per node (usually one per GPU).
        resources_per_node: ``{"cpu": 4, "memory": "16Gi", "gpu": 1}``; any subset (``nvidia.com/gpu`` for ``gpu`` too).
        env: extra environment variables for the workers (not for secrets).
    """

    config: LLMConfig
    num_nodes: int | None = None
    procs_per_node: int | None = None
    resources_per_node: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class CustomTrainer:
    """Run ``func(**func_args)`` under torchrun on every worker of ``num_nodes`` nodes.

    The function is shipped by value (cloudpickle), so it may be a closure, a lambda or defined
    in a notebook; it must not rely on objects that cannot be pickled. Each worker sees the
    usual torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...).
    Its return value on every rank is kept and returned by
    :meth:`~kubetune.client.TrainerClient.get_job_return_values`.

    Args:
        func: the training function.
        func_args: keyword arguments for ``func``.
        num_nodes: torchrun agents (default: the runtime's, else 1).
        procs_per_node: workers per node; defaults to ``resources_per_node["gpu"]``, else the runtime's, else 1.
        resources_per_node: ``{"cpu": 4, "memory": "16Gi", "gpu": 1}``; any subset (``nvidia.com/gpu`` for ``gpu`` too).
        env: extra environment variables for the workers (not for secrets).
    """

    func: Callable[..., Any]
    func_args: dict[str, Any] | None = None
    num_nodes: int | None = None
    procs_per_node: int | None = None
    resources_per_node: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Initializer:
    """What to fetch before training: ``model`` into ``<run>/model``, ``dataset`` into ``<run>/dataset``.

    Each is a storage URI or local path (``hf://org/name``, ``s3://bucket/prefix``, ``/data/x``,
    ``file:///data/x``, ``pkg://dist/file``), or a full :class:`~kubetune.spec.ModelInitializer` /
    :class:`~kubetune.spec.DatasetInitializer` (revision, patterns, secret references, S3 endpoint).
    """

    model: str | ModelInitializer | None = None
    dataset: str | DatasetInitializer | None = None


@dataclass
class Step:
    """One step of a job: ``model-initializer``, ``dataset-initializer``, ``node-0``, ``node-1``..."""

    name: str
    status: StepStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None


@dataclass
class Job:
    """A training job as a backend sees it now.

    ``reason`` and ``message`` explain a Failed or Cancelled job. ``run_dir`` holds ``model/``,
    ``dataset/`` and ``output/``; ``output_dir`` is ``run_dir/output`` (metrics, checkpoints,
    ``adapter/``, ``merged/``, ``loss.png``). ``phase`` says what an active job is doing
    (``fetching model``, ``loading model``, ``tokenizing 164 rows``, ``compiling``, ``training``,
    ``exporting``), from its steps and the trainer's phase record; None when not known.
    """

    name: str
    status: JobStatus
    runtime: str | None
    trainer_kind: str
    num_nodes: int
    procs_per_node: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    message: str | None = None
    run_dir: Path | None = None
    steps: list[Step] = field(default_factory=list)
    progress: Progress | None = None
    phase: str | None = None

    @property
    def output_dir(self) -> Path | None:
        """``run_dir/output``: metrics, checkpoints and exported weights."""
        return None if self.run_dir is None else RunDir(self.run_dir).output


@dataclass
class JobOutputs:
    """What a job has stored that deleting it keeps, and ``delete_job(name, purge=True)`` removes.

    ``locations`` are local paths (local backend) or ``PersistentVolumeClaim/<name>`` (Kubernetes);
    ``size_bytes`` is what they hold on disk, or the volume's requested capacity (``None`` when unknown).
    """

    locations: list[str]
    size_bytes: int | None


@dataclass
class Event:
    """Something that happened to a job, in order: status changes, step starts and ends, warnings."""

    time: datetime
    type: str
    reason: str
    message: str


__all__ = [
    "TERMINAL_STATUSES",
    "BuiltinTrainer",
    "CustomTrainer",
    "Event",
    "Initializer",
    "Job",
    "JobOutputs",
    "JobStatus",
    "Progress",
    "Step",
    "StepStatus",
]
