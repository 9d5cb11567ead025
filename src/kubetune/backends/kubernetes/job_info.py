"""What the SDK reports about a TrainJob, read from the object, its pods and events (pure).

The inputs are plain API objects (dicts as the API server serves them), so the mapping is
tested without a cluster. TrainJob conditions map onto the SDK lifecycle:

==========================================  ==============================================
TrainJob                                    SDK ``JobStatus``
==========================================  ==============================================
being deleted (``deletionTimestamp``)       Cancelled (reason ``Terminated``)
``Failed=True``                             Failed (the condition's reason and message)
``Complete=True``                           Complete
``Suspended=True``, reason ``Suspended``     Suspended (``spec.suspend``: the user or ``suspend_job``)
``Suspended=True``, reason ``QueuedByKueue`` Created (waiting for admission, or preempted by Kueue)
``Running=True``, reason ``Initializing``   Initializing
``Running=True``                            Running
otherwise                                   Created
==========================================  ==============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from kubetune.contracts.kubernetes import COMPLETION_INDEX_LABEL, PROGRESS_STATUS_FIELD, REPLICATED_JOB_LABEL
from kubetune.contracts.progress import Progress
from kubetune.contracts.types import EXPORTER_STEP, Event, Job, JobStatus, Step, StepStatus
from kubetune.controller.api import DATASET_INITIALIZER, MODEL_INITIALIZER, NODE

INITIALIZERS = (DATASET_INITIALIZER, MODEL_INITIALIZER)  # the order the controller chains them

_PHASES = {
    "Pending": StepStatus.PENDING,
    "Running": StepStatus.RUNNING,
    "Succeeded": StepStatus.SUCCEEDED,
    "Failed": StepStatus.FAILED,
}


def parse_time(stamp: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API (``2026-01-01T00:00:00Z``) as an aware datetime."""
    if not stamp:
        return None
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def step_of_pod(pod: Mapping[str, Any]) -> str | None:
    """The SDK step a pod runs: ``dataset-initializer``, ``model-initializer``, ``node-<index>`` or ``exporter``."""
    labels = pod.get("metadata", {}).get("labels") or {}
    job = labels.get(REPLICATED_JOB_LABEL)
    if job == NODE:
        index = labels.get(COMPLETION_INDEX_LABEL)
        return None if index is None else f"{NODE}-{index}"
    return job if job in (*INITIALIZERS, EXPORTER_STEP) else None


def latest_pods(pods: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The newest pod of each step (an initializer may have retried)."""
    newest: dict[str, Mapping[str, Any]] = {}
    for pod in sorted(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or ""):
        step = step_of_pod(pod)
        if step is not None:
            newest[step] = pod
    return newest


def _status(obj: Mapping[str, Any]) -> tuple[JobStatus, str | None, str | None]:
    meta = obj.get("metadata", {})
    if meta.get("deletionTimestamp"):
        return JobStatus.CANCELLED, "Terminated", "the TrainJob is being deleted"
    true = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", []) if c.get("status") == "True"}
    for kind, status in (
        ("Failed", JobStatus.FAILED),
        ("Complete", JobStatus.COMPLETE),
        ("Suspended", JobStatus.CREATED),
        ("Running", JobStatus.RUNNING),
    ):
        if kind in true:
            condition = true[kind]
            if kind == "Running" and condition.get("reason") == "Initializing":
                status = JobStatus.INITIALIZING
            if kind == "Suspended" and condition.get("reason") == "Suspended":
                status = JobStatus.SUSPENDED
            shown = status in (JobStatus.FAILED, JobStatus.CREATED, JobStatus.SUSPENDED)
            return status, condition.get("reason") if shown else None, condition.get("message") if shown else None
    return JobStatus.CREATED, None, None


def _condition_time(obj: Mapping[str, Any], kinds: tuple[str, ...]) -> datetime | None:
    for condition in (obj.get("status") or {}).get("conditions", []):
        if condition.get("type") in kinds and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def _step(name: str, pod: Mapping[str, Any] | None, counts: Mapping[str, Any] | None) -> Step:
    if pod is None:
        status = StepStatus.PENDING
        if counts and name in (*INITIALIZERS, EXPORTER_STEP):
            if counts.get("failed"):
                status = StepStatus.FAILED
            elif counts.get("succeeded"):
                status = StepStatus.SUCCEEDED
            elif counts.get("active"):
                status = StepStatus.RUNNING
        return Step(name, status)
    status = _PHASES.get((pod.get("status") or {}).get("phase", "Pending"), StepStatus.PENDING)
    started = finished = exit_code = None
    for container in (pod.get("status") or {}).get("containerStatuses", []):
        state = container.get("state") or {}
        if "running" in state:
            started = parse_time(state["running"].get("startedAt"))
        elif "terminated" in state:
            started = parse_time(state["terminated"].get("startedAt"))
            finished = parse_time(state["terminated"].get("finishedAt"))
            exit_code = state["terminated"].get("exitCode")
    return Step(name, status, started_at=started, finished_at=finished, exit_code=exit_code)


def _progress(record: Mapping[str, Any] | None) -> Progress | None:
    """The trainer's progress record from the status; None when absent or not a record (e.g. a
    TrainJob last updated by a kubetune version with another status shape)."""
    try:
        return Progress.from_json(record) if record else None
    except (KeyError, TypeError, ValueError):
        return None


def job_from_trainjob(obj: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> Job:
    """The SDK's :class:`~kubetune.client.Job` for a TrainJob object and the pods of its JobSet."""
    meta, spec = obj.get("metadata", {}), obj.get("spec", {})
    trainer = spec.get("trainer") or {}
    status_obj = obj.get("status") or {}
    counts = {entry.get("name"): entry for entry in status_obj.get("jobsStatus", [])}
    by_step = latest_pods(pods)
    initializers = [
        job
        for job in INITIALIZERS
        if job in counts or job in by_step or job.removesuffix("-initializer") in (spec.get("initializer") or {})
    ]
    node_pods = [step for step in by_step if step.startswith(f"{NODE}-")]
    output = (trainer.get("llmConfig") or {}).get("output") or {}
    exports = (
        EXPORTER_STEP in counts
        or EXPORTER_STEP in by_step
        or bool(output.get("push_to") or output.get("register_model"))
    )
    num_nodes = trainer.get("numNodes") or len(node_pods) or 1
    status, reason, message = _status(obj)
    progress = status_obj.get(PROGRESS_STATUS_FIELD)
    return Job(
        name=meta.get("name", ""),
        status=status,
        runtime=(spec.get("runtimeRef") or {}).get("name"),
        trainer_kind="custom" if trainer.get("command") else "builtin",
        num_nodes=num_nodes,
        procs_per_node=trainer.get("numProcPerNode") or 1,
        created_at=parse_time(meta.get("creationTimestamp")) or datetime.now(timezone.utc),
        started_at=_condition_time(obj, ("Running",)),
        finished_at=_condition_time(obj, ("Complete", "Failed")),
        reason=reason,
        message=message,
        steps=[_step(job, by_step.get(job), counts.get(job)) for job in initializers]
        + [_step(f"{NODE}-{i}", by_step.get(f"{NODE}-{i}"), None) for i in range(num_nodes)]
        + ([_step(EXPORTER_STEP, by_step.get(EXPORTER_STEP), counts.get(EXPORTER_STEP))] if exports else []),
        progress=_progress(progress),
    )


def event_from_kubernetes(event: Mapping[str, Any], job_name: str) -> Event:
    """A core/v1 Event as an SDK :class:`~kubetune.client.Event`; events of child objects name them."""
    involved = event.get("involvedObject") or {}
    message = event.get("message") or ""
    if involved.get("name") != job_name or involved.get("kind") != "TrainJob":
        message = f"{involved.get('kind')}/{involved.get('name')}: {message}"
    stamp = event.get("lastTimestamp") or event.get("eventTime") or event.get("metadata", {}).get("creationTimestamp")
    return Event(
        time=parse_time(stamp) or datetime.now(timezone.utc),
        type=event.get("type") or "",
        reason=event.get("reason") or "",
        message=message,
    )


def is_about(event: Mapping[str, Any], job_name: str) -> bool:
    """True for events of the TrainJob and of the objects the controller names after it (JobSet, PodGroup,
    ConfigMaps, PVC, Jobs, pods), and not of another job whose name merely starts the same."""
    name = (event.get("involvedObject") or {}).get("name") or ""
    if name == job_name or name in {f"{job_name}-{suffix}" for suffix in ("config", "workspace", "function")}:
        return True
    return any(name.startswith(f"{job_name}-{job}-") for job in (*INITIALIZERS, NODE, EXPORTER_STEP))
