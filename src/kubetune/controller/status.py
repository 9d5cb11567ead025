"""TrainJob status as pure functions: JobSet state -> conditions, job counts, training progress.

Conditions: ``Created`` (the JobSet exists), ``Running`` (reason ``Initializing`` while an
initializer runs, ``Training`` once the node pods run), ``Suspended`` (reason ``Suspended``
when the user asked, ``QueuedByKueue`` while Kueue has not admitted it), ``Complete`` and
``Failed`` (reasons ``JobSetFailed``, ``DeadlineExceeded``, or an input reason such as
``RuntimeNotFound``). Complete and Failed are terminal: once True they never change.
``lastTransitionTime`` moves only when a condition's status changes.

``status.trainingProgress`` belongs to the trainer: rank 0 patches its progress record there
(:mod:`kubetune.trainer.status_report`). The status computed here never contains that field,
so the controller's patches keep the trainer's latest report instead of writing back an older one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from kubetune.contracts.kubernetes import KUEUE_QUEUE_LABEL, PROGRESS_STATUS_FIELD
from kubetune.controller.api import NODE

TERMINAL = ("Complete", "Failed")


def timestamp(now: datetime) -> str:
    """RFC 3339 UTC time as Kubernetes writes it."""
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime:
    """Parse a Kubernetes RFC 3339 timestamp."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def set_condition(
    conditions: list[dict], kind: str, status: bool, reason: str, message: str, now: datetime, generation: int | None
) -> list[dict]:
    """Return ``conditions`` with ``kind`` set; keeps ``lastTransitionTime`` when the status is unchanged."""
    value = "True" if status else "False"
    updated = []
    found = False
    for condition in conditions:
        if condition["type"] != kind:
            updated.append(condition)
            continue
        found = True
        changed = condition.get("status") != value
        updated.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": timestamp(now)
                if changed
                else condition.get("lastTransitionTime", timestamp(now)),
                **({"observedGeneration": generation} if generation is not None else {}),
            }
        )
    if not found:
        updated.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": timestamp(now),
                **({"observedGeneration": generation} if generation is not None else {}),
            }
        )
    return updated


def condition_true(status: Mapping[str, Any] | None, kind: str) -> bool:
    """Whether ``status.conditions`` has ``kind`` with status True."""
    return any(c["type"] == kind and c.get("status") == "True" for c in (status or {}).get("conditions", []))


def is_finished(status: Mapping[str, Any] | None) -> bool:
    """Whether the TrainJob reached Complete or Failed."""
    return any(condition_true(status, kind) for kind in TERMINAL)


def failed_status(trainjob: Mapping[str, Any], reason: str, message: str, now: datetime) -> dict:
    """The status of a TrainJob that cannot run (bad input): Failed with ``reason``, nothing created."""
    status = _controller_status(trainjob)
    generation = trainjob.get("metadata", {}).get("generation")
    conditions = status.get("conditions", [])
    conditions = set_condition(conditions, "Created", False, reason, message, now, generation)
    conditions = set_condition(conditions, "Failed", True, reason, message, now, generation)
    status["conditions"] = conditions
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def deadline_exceeded(trainjob: Mapping[str, Any], now: datetime) -> bool:
    """Whether ``spec.activeDeadlineSeconds`` has passed since the TrainJob was created."""
    deadline = (trainjob.get("spec") or {}).get("activeDeadlineSeconds")
    created = trainjob.get("metadata", {}).get("creationTimestamp")
    if not deadline or not created:
        return False
    return (now - parse_timestamp(created)).total_seconds() > deadline


def _controller_status(trainjob: Mapping[str, Any]) -> dict:
    """A copy of the TrainJob's status without the trainer's own field."""
    status = copy.deepcopy(trainjob.get("status") or {})
    status.pop(PROGRESS_STATUS_FIELD, None)
    return status


def mirror_status(trainjob: Mapping[str, Any], jobset: Mapping[str, Any] | None, now: datetime) -> dict:
    """Compute the TrainJob status from its JobSet (None when not created yet).

    Args:
        trainjob: the TrainJob (its current status is the starting point).
        jobset: the JobSet the controller created, with its status.
        now: the current time (for transition times and the deadline).

    Returns:
        The status without ``trainingProgress`` (the trainer's to write).
    """
    status = _controller_status(trainjob)
    if is_finished(status):
        return status
    generation = trainjob.get("metadata", {}).get("generation")
    conditions = status.get("conditions", [])

    def put(kind: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, kind, value, reason, message, now, generation)

    if generation is not None:
        status["observedGeneration"] = generation
    if jobset is None:
        put("Created", False, "Creating", "the JobSet is not created yet")
        status["conditions"] = conditions
        return status
    put("Created", True, "JobSetCreated", f"JobSet {jobset['metadata']['name']} created")
    jobs = [_job_counts(entry) for entry in (jobset.get("status") or {}).get("replicatedJobsStatus", [])]
    status["jobsStatus"] = jobs
    jobset_conditions = {c["type"]: c for c in (jobset.get("status") or {}).get("conditions", [])}

    def jobset_true(kind: str) -> dict | None:
        condition = jobset_conditions.get(kind)
        return condition if condition and condition.get("status") == "True" else None

    if completed := jobset_true("Completed"):
        put("Running", False, "Completed", "training finished")
        put("Complete", True, "JobSetCompleted", completed.get("message") or "all node pods succeeded")
    elif failed := jobset_true("Failed"):
        put("Running", False, "Failed", "the JobSet failed")
        put("Failed", True, "JobSetFailed", failed.get("message") or failed.get("reason") or "the JobSet failed")
    elif deadline_exceeded(trainjob, now):
        deadline = trainjob["spec"]["activeDeadlineSeconds"]
        put("Running", False, "DeadlineExceeded", "stopped at the deadline")
        put("Failed", True, "DeadlineExceeded", f"activeDeadlineSeconds ({deadline}s) exceeded")
    elif (jobset.get("spec") or {}).get("suspend"):
        user = bool((trainjob.get("spec") or {}).get("suspend"))
        queued = not user and KUEUE_QUEUE_LABEL in (trainjob.get("metadata", {}).get("labels") or {})
        reason = "QueuedByKueue" if queued else "Suspended"
        message = "waiting for Kueue to admit the job" if queued else "suspended by spec.suspend"
        put("Suspended", True, reason, message)
        put("Running", False, reason, message)
    else:
        if any(c["type"] == "Suspended" for c in conditions):
            put("Suspended", False, "Resumed", "the job is resumed")
        node = next((job for job in jobs if job["name"] == NODE), None)
        if node and (node["active"] or node["ready"]):
            put("Running", True, "Training", "the node pods are running")
        elif any(job["active"] or job["ready"] for job in jobs):
            running = ", ".join(job["name"] for job in jobs if job["active"] or job["ready"])
            put("Running", True, "Initializing", f"running: {running}")
        else:
            put("Running", False, "Pending", "waiting for pods to start")
    status["conditions"] = conditions
    return status


def _job_counts(entry: Mapping[str, Any]) -> dict:
    return {
        "name": entry["name"],
        **{key: int(entry.get(key, 0)) for key in ("ready", "active", "succeeded", "failed", "suspended")},
    }
