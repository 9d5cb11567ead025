"""What a job page's live stream sends: the job's row, its new progress records and new log lines.

:class:`JobFollower` polls the SDK client (so it works the same on every backend) and turns what
changed since its last poll into server-sent events.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import ValidationError

from kubetune.client import TrainerClient
from kubetune.errors import KubetuneError
from kubetune.initializers.secrets import remember_secret, scrub
from kubetune.spec.job import JobSpec
from kubetune.ui.schemas import JobRow, MetricPoint

#: Log lines a page gets when it opens (the newest ones); later lines follow as they are written.
LOG_TAIL_LINES = 1000


def sse(event: str, data: Any) -> str:
    """One server-sent event: its name and its data as one JSON line."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def remember_job_secrets(config: dict[str, Any] | None) -> None:
    """Teach :func:`scrub` the values of the secrets the job's initializers reference through environment
    variables this process also has (a local job's workers inherit them). Secret files are not read."""
    if config is None:
        return
    try:
        spec = JobSpec.model_validate(config)
    except ValidationError:
        return
    initializers = spec.initializer
    sources = [] if initializers is None else [initializers.model, initializers.dataset]
    for source in filter(None, sources):
        for ref in source.secret_refs():
            if ref.file is None:
                remember_secret(os.environ.get(ref.env_var_name(), "").strip())


def scrubbed_log(client: TrainerClient, name: str, step: str) -> list[str]:
    """Every line of the step's log so far, with the job's secret values blanked out."""
    remember_job_secrets(client.get_job_config(name))
    return [scrub(line) for line in client.get_job_logs(name, step=step)]


class MetricsDelta:
    """Which progress records are new since the last call.

    A backend that keeps every record (local) returns a growing list: the records after the ones
    sent are new; one whose list shrank or changed (a resumed run drops steps after its checkpoint)
    is sent again whole. A backend that reports only the newest record (Kubernetes) returns a
    moving window: records of steps after the last one sent are new. The first update is a
    ``reset``, so a page that reconnects starts its curves afresh.
    """

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] | None = None

    def update(self, records: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]] | None:
        """``("append", new records)``, ``("reset", all records)`` or None when nothing changed."""
        if self.sent is None:
            self.sent = list(records)
            return "reset", records
        last_step = self.sent[-1]["step"] if self.sent else 0
        if records[: len(self.sent)] == self.sent:
            new = records[len(self.sent) :]
        elif records and all(record["step"] > last_step for record in records):
            new = records
        elif records == self.sent[-len(records) :]:
            new = []
        else:
            self.sent = list(records)
            return "reset", records
        self.sent.extend(new)
        return ("append", new) if new else None


class JobFollower:
    """Polls one job for its page's stream; :meth:`poll` returns the events to send and whether the job ended."""

    def __init__(self, client: TrainerClient, name: str, step: str):
        self.client = client
        self.name = name
        self.step = step
        self.row: dict[str, Any] | None = None
        self.metrics = MetricsDelta()
        self.log_lines: int | None = None

    def poll(self) -> tuple[list[str], bool]:
        """The events for what changed since the last poll, and True once the job has ended.

        Raises:
            JobNotFoundError: the job was deleted.
        """
        job = self.client.get_job(self.name)
        events = []
        row = JobRow.of(job).model_dump(mode="json")
        if row != self.row:
            self.row = row
            events.append(sse("job", row))
        records = [MetricPoint.of(record).model_dump(mode="json") for record in self.client.get_job_metrics(self.name)]
        change = self.metrics.update(records)
        if change is not None:
            events.append(sse(change[0], change[1]))
        events.extend(self._new_log_lines())
        return events, job.status.is_terminal

    def _new_log_lines(self) -> list[str]:
        try:
            lines = scrubbed_log(self.client, self.name, self.step)
        except KubetuneError:  # a step the job does not have: nothing to follow
            return []
        if self.log_lines is None or len(lines) < self.log_lines:  # a new stream, or the log was started again
            self.log_lines = len(lines)
            return [sse("log-reset", lines[-LOG_TAIL_LINES:])]
        new = lines[self.log_lines :]
        self.log_lines = len(lines)
        return [sse("log", new)] if new else []
