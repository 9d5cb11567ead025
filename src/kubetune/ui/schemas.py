"""The JSON records of the dashboard's API: one pydantic model each, so the page and the OpenAPI spec share them."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from kubetune.client import Event, Job, JobOutputs, Progress, Runtime
from kubetune.contracts.run_dir import RunDir

#: Job names are DNS labels (kubetune.spec.job); the API refuses anything else before any lookup.
JOB_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: Step names: ``model-initializer``, ``dataset-initializer``, ``node-0``..., ``supervisor``.
STEP_PATTERN = r"^[a-z0-9][-a-z0-9]{0,62}$"


class JobRow(BaseModel):
    """One job as the jobs table shows it: status, progress of its last logged step, why it ended."""

    name: str
    status: str
    phase: str | None = Field(description="What an active job is doing (loading model, tokenizing, training...).")
    runtime: str | None
    trainer_kind: str
    nodes: str = Field(description="num_nodes x procs_per_node.")
    created_at: datetime
    step: int | None
    total_steps: int | None
    loss: float | None
    eval_loss: float | None
    tokens_per_s: float | None
    eta_s: float | None
    reason: str | None
    message: str | None

    @classmethod
    def of(cls, job: Job) -> JobRow:
        """The row of ``job``."""
        progress = job.progress
        return cls(
            name=job.name,
            status=job.status.value,
            phase=job.phase,
            runtime=job.runtime,
            trainer_kind=job.trainer_kind,
            nodes=f"{job.num_nodes}x{job.procs_per_node}",
            created_at=job.created_at,
            step=progress.step if progress else None,
            total_steps=progress.total_steps if progress else None,
            loss=progress.loss if progress else None,
            eval_loss=progress.eval_loss if progress else None,
            tokens_per_s=progress.tokens_per_s if progress else None,
            eta_s=progress.eta_s if progress else None,
            reason=job.reason,
            message=job.message,
        )


class MetricPoint(BaseModel):
    """One progress record (a logged step, or an eval-only record with ``loss`` null)."""

    step: int
    total_steps: int
    loss: float | None = None
    eval_loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float | None = None
    objective: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(cls, progress: Progress) -> MetricPoint:
        """The point of one record."""
        known = cls.model_fields.keys()
        return cls(**{key: value for key, value in progress.to_json().items() if key in known})


class StepView(BaseModel):
    """One step of a job (an initializer or a node)."""

    name: str
    status: str
    exit_code: int | None


class EventView(BaseModel):
    """One event of a job."""

    time: datetime
    type: str
    reason: str
    message: str

    @classmethod
    def of(cls, event: Event) -> EventView:
        """The view of ``event``."""
        return cls(**dataclasses.asdict(event))


class JobDetail(JobRow):
    """Everything the job page shows besides the curves and logs."""

    started_at: datetime | None
    finished_at: datetime | None
    steps: list[StepView]
    events: list[EventView]
    run_dir: str | None
    output_dir: str | None
    outputs: list[str] = Field(description="What the job has stored (what deleting it with purge removes).")
    outputs_size_bytes: int | None
    exports: dict[str, str] = Field(description="Exports written so far: adapter, merged model, loss curve.")
    config: dict[str, Any] | None = Field(description="The resolved job spec (secrets only as references).")

    @classmethod
    def of(cls, job: Job, events: list[Event], outputs: JobOutputs, config: dict[str, Any] | None) -> JobDetail:
        """The detail of ``job`` with its events, outputs and resolved config."""
        exports: dict[str, str] = {}
        if job.run_dir is not None:
            layout = RunDir(job.run_dir)
            found = {"adapter": layout.adapter, "merged": layout.merged, "loss curve": layout.loss_curve}
            exports = {label: str(path) for label, path in found.items() if path.exists()}
        return cls(
            **JobRow.of(job).model_dump(),
            started_at=job.started_at,
            finished_at=job.finished_at,
            steps=[StepView(name=s.name, status=s.status.value, exit_code=s.exit_code) for s in job.steps],
            events=[EventView.of(event) for event in events],
            run_dir=None if job.run_dir is None else str(job.run_dir),
            output_dir=None if job.output_dir is None else str(job.output_dir),
            outputs=outputs.locations,
            outputs_size_bytes=outputs.size_bytes,
            exports=exports,
            config=config,
        )


class LogLines(BaseModel):
    """The last lines of one step's log, secrets scrubbed."""

    step: str
    lines: list[str]


class RuntimeRow(BaseModel):
    """One runtime of the catalog with its memory plan per GPU."""

    name: str
    family: str | None
    method: str
    model_uri: str | None
    description: str
    num_nodes: int
    procs_per_node: int
    gpus_per_node: int
    plan: str = Field(description="The memory plan per GPU of the runtime's defaults (kubetune validate's).")

    @classmethod
    def of(cls, runtime: Runtime, plan: str) -> RuntimeRow:
        """The row of ``runtime``."""
        limits = (runtime.resources_per_node or {}).get("limits") or {}
        return cls(
            name=runtime.name,
            family=runtime.family,
            method=runtime.method,
            model_uri=runtime.model_uri,
            description=runtime.description,
            num_nodes=runtime.num_nodes,
            procs_per_node=runtime.procs_per_node,
            gpus_per_node=int(limits.get("nvidia.com/gpu", 0)),
            plan=plan,
        )


class ActionResult(BaseModel):
    """What a state-changing request did."""

    name: str
    status: str = Field(description="The job's status after the request ('Deleted' once deleted).")


class ErrorBody(BaseModel):
    """A user error (unknown job, a job that cannot be cancelled...), as one line."""

    detail: str
