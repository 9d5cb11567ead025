"""The contract every backend fulfils; ``TrainerClient`` delegates each method here.

A backend receives one validated :class:`~kubetune.spec.job.JobSpec` and runs it: initializer
steps (``model-initializer``, ``dataset-initializer``), then ``num_nodes`` x ``procs_per_node``
workers under torchrun (steps ``node-0``, ``node-1``...), all sharing one run directory.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator
from typing import Any

from kubetune.contracts.progress import Progress
from kubetune.contracts.types import Event, Job, JobOutputs, JobStatus
from kubetune.errors import ConfigError, JobFailedError, JobTimeoutError
from kubetune.runtimes import Runtime
from kubetune.spec.job import JobSpec


class RuntimeBackend(abc.ABC):
    """Abstract backend. Methods raise :class:`~kubetune.errors.KubetuneError` subclasses for user errors."""

    @abc.abstractmethod
    def list_runtimes(self) -> list[Runtime]:
        """Runtimes this backend offers (empty when no catalog is installed)."""

    @abc.abstractmethod
    def get_runtime(self, name: str) -> Runtime:
        """One runtime by name. Raises ConfigError naming the known runtimes if it does not exist."""

    @abc.abstractmethod
    def submit(self, spec: JobSpec) -> str:
        """Check ``spec`` against this backend, record it and start it; return the job name.

        Every check (unknown runtime, resources this backend cannot give, a name in use...)
        happens before anything is launched or stored: on error nothing is left behind.

        Raises:
            ConfigError: the spec cannot run here. JobExistsError: the name is taken.
        """

    @abc.abstractmethod
    def list_jobs(self) -> list[Job]:
        """Every job, oldest first."""

    @abc.abstractmethod
    def get_job(self, name: str) -> Job:
        """A job's status, steps and progress. Raises JobNotFoundError."""

    @abc.abstractmethod
    def get_job_logs(self, name: str, step: str = "node-0", follow: bool = False) -> Iterator[str]:
        """Lines a step wrote. With ``follow``, keep yielding until the step's job has finished.

        Raises:
            JobNotFoundError, ConfigError (unknown step name).
        """

    def get_job_metrics(self, name: str) -> list[Progress]:
        """The job's progress records so far, one per logged step, oldest first.

        This default has only the newest record (what :meth:`get_job` reports): a backend that can
        read the whole ``metrics.jsonl`` returns every step. Raises JobNotFoundError.
        """
        progress = self.get_job(name).progress
        return [] if progress is None else [progress]

    def get_job_config(self, name: str) -> dict[str, Any] | None:
        """The job's resolved spec (``output/config.yaml``: secrets only as references), as data.

        ``None`` when this backend cannot read it (or the job has not written it yet). Raises JobNotFoundError.
        """
        self.get_job(name)
        return None

    def cancel_job(self, name: str, reason: str | None = None, message: str | None = None) -> None:
        """Stop an active job without keeping its work: it ends Cancelled (its record, logs and outputs stay),
        with ``reason`` and ``message`` when given (a study pruning a trial). Returns once its processes are gone.

        Raises:
            JobNotFoundError. ConfigError: the job has already ended, or this backend cannot cancel
            (stop it with :meth:`suspend_job` or :meth:`delete_job` there).
        """
        self.get_job(name)
        raise ConfigError(f"{type(self).__name__} cannot cancel a job; suspend it or delete it")

    @abc.abstractmethod
    def get_job_events(self, name: str) -> list[Event]:
        """The job's events in order. Raises JobNotFoundError."""

    @abc.abstractmethod
    def get_job_return_values(self, name: str) -> dict[int, Any]:
        """A finished custom-trainer job's return value per global rank. Raises JobNotFoundError."""

    def wait_for_job_status(
        self, name: str, status: set[JobStatus], timeout: float | None = None, polling_interval: float = 1.0
    ) -> Job:
        """Poll :meth:`get_job` until the job's status is in ``status`` (the same for every backend).

        ``timeout=None`` waits as long as the job runs (a fine-tune can take days).

        Raises:
            JobFailedError: the job ended in a terminal status not in ``status``.
            JobTimeoutError: ``timeout`` seconds passed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(name)
            if job.status in status:
                return job
            if job.status.is_terminal:
                detail = f" ({job.reason}: {job.message})" if job.reason else ""
                raise JobFailedError(f"job {name!r} ended {job.status.value}{detail}")
            if deadline is not None and time.monotonic() >= deadline:
                wanted = ", ".join(sorted(s.value for s in status))
                raise JobTimeoutError(f"job {name!r} is {job.status.value}, not {wanted}, after {timeout:g}s")
            time.sleep(polling_interval)

    @abc.abstractmethod
    def suspend_job(self, name: str) -> None:
        """Ask the job to stop keeping its work: the workers checkpoint and exit, the job becomes
        Suspended. Returns once asked (idempotent).

        Raises:
            JobNotFoundError. ConfigError: the job has already ended.
        """

    @abc.abstractmethod
    def resume_job(self, name: str) -> None:
        """Run a Suspended job again from its newest checkpoint. Returns once started.

        Raises:
            JobNotFoundError. ConfigError: the job cannot be resumed (it is active or Complete).
        """

    @abc.abstractmethod
    def get_job_outputs(self, name: str) -> JobOutputs:
        """Where the job's outputs (run directory, volume) are and their size. Raises JobNotFoundError."""

    @abc.abstractmethod
    def delete_job(self, name: str, purge: bool = False) -> None:
        """Stop the job's processes (or cluster objects) and remove its state.

        The outputs (trained model, checkpoints, metrics) are kept unless ``purge``: then
        everything :meth:`get_job_outputs` lists is removed too.

        Raises:
            JobNotFoundError: no such job.
        """

    def concurrent_job_limit(self, spec: JobSpec) -> int | None:
        """How many jobs like ``spec`` this backend can run at once (None: no limit it knows of;
        a cluster queues what does not fit)."""
        return None

    def set_aside_outputs(self, spec: JobSpec) -> str | None:
        """Move the outputs already in ``spec``'s run directory aside, so a new job starts afresh.

        Called before a replacement job is submitted. Returns where they went, or ``None`` when
        there was nothing to move (or the backend keeps outputs on a volume it cannot rename).
        """
        return None
