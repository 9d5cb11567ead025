"""What the SDK reports about a TrainJob, read from the object's status (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Most specific first: a job that failed is Failed even if it also shows Created.
_STATUS_ORDER = ("Failed", "Complete", "Suspended", "Running", "Created")


@dataclass(frozen=True)
class StepStatus:
    """Job counts of one step (dataset-initializer, model-initializer or node)."""

    name: str
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    suspended: int = 0


@dataclass(frozen=True)
class TrainJobInfo:
    """A TrainJob as the SDK shows it.

    Attributes:
        name, namespace, runtime: identity and the runtime it runs on.
        status: Failed, Complete, Suspended, Running, Created or Pending (nothing reported yet).
        reason, message: of the condition that decided ``status``.
        num_nodes: requested nodes (None: the runtime's default).
        steps: per-step job counts.
        progress: ``{"step", "totalSteps", "loss"?, "etaSeconds"?, "updatedAt"}`` or None.
        created: creation timestamp (RFC 3339).
    """

    name: str
    namespace: str
    runtime: str
    status: str
    reason: str = ""
    message: str = ""
    num_nodes: int | None = None
    steps: list[StepStatus] = field(default_factory=list)
    progress: dict[str, Any] | None = None
    created: str | None = None


@dataclass(frozen=True)
class JobEvent:
    """A Kubernetes event about the TrainJob or one of its objects."""

    type: str
    reason: str
    message: str
    object: str
    time: str | None


def job_info_from_trainjob(obj: dict[str, Any]) -> TrainJobInfo:
    """Summarise a TrainJob object (as the API returns it) into :class:`TrainJobInfo`."""
    meta = obj.get("metadata", {})
    spec = obj.get("spec", {})
    status = obj.get("status") or {}
    true = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
    summary, reason, message = "Pending", "", ""
    for kind in _STATUS_ORDER:
        if kind in true:
            summary, reason, message = kind, true[kind].get("reason", ""), true[kind].get("message", "")
            break
    return TrainJobInfo(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        runtime=spec.get("runtimeRef", {}).get("name", ""),
        status=summary,
        reason=reason,
        message=message,
        num_nodes=(spec.get("trainer") or {}).get("numNodes"),
        steps=[StepStatus(**entry) for entry in status.get("jobsStatus", [])],
        progress=status.get("trainingProgress"),
        created=meta.get("creationTimestamp"),
    )
