"""Feeding the trackers of ``report_to`` from trainer rank 0 without ever holding up training.

Each tracker has a worker thread and a queue: the trainer hands a progress record over and goes
on. A failing call (an unreachable server, a refused request) is announced once on stderr and
retried with exponential backoff (1 s doubling to 60 s) for ``tracking.retry_s``; then that
tracker's records are dropped with a second, last warning, and training carries on. With
``strict_tracking`` a tracker that cannot start fails the job before training, and a failure
during training fails it at the next step.

The tracker run ids are kept in ``output/tracking.json`` (:func:`read_tracking_file`): a resumed
job continues the same runs, and the exporter registers the model on the MLflow run.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubetune.contracts.kubernetes import TRAINJOB_NAME_ENV
from kubetune.contracts.progress import Progress
from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError, KubetuneError
from kubetune.initializers.secrets import scrub
from kubetune.spec.job import JobSpec
from kubetune.spec.tracking import TRACKERS, WandbConfig
from kubetune.tracking.trackers import (
    MlflowTracker,
    RunInfo,
    TensorBoardTracker,
    Tracker,
    WandbTracker,
    metric_values,
    required_package,
    tensorboard_available,
)

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
#: How long the end of training waits for the trackers to catch up (when they are failing: at most this).
FINISH_WAIT_S = 120.0


class TrackingError(KubetuneError):
    """A tracker failed and ``strict_tracking`` is on."""


def read_tracking_file(layout: RunDir) -> dict[str, dict[str, str]]:
    """``output/tracking.json``: tracker name -> ``{"run_id": ...}`` (and the MLflow ``tracking_uri``)."""
    try:
        return json.loads(layout.tracking_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def _write_tracking_file(layout: RunDir, runs: Mapping[str, Mapping[str, str]]) -> None:
    layout.output.mkdir(parents=True, exist_ok=True)
    tmp = layout.tracking_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(runs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, layout.tracking_file)


def chosen_trackers(spec: JobSpec) -> list[str]:
    """The trackers of ``trainer.report_to``; left out, TensorBoard when its package is installed."""
    chosen = spec.trainer.report_to
    if chosen is None:
        return ["tensorboard"] if tensorboard_available() else []
    return [name for name in TRACKERS if name in chosen]


def build_trackers(spec: JobSpec, layout: RunDir) -> list[Tracker]:
    """One tracker per ``report_to`` entry.

    Raises:
        ConfigError: a tracker's Python package is not installed.
    """
    tracking = spec.trainer.tracking
    trackers: list[Tracker] = []
    for name in chosen_trackers(spec):
        missing = required_package(name)
        if missing is not None:
            raise ConfigError(f"trainer.report_to: {name!r} needs the {missing} package (pip install kubetune[{name}])")
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(layout))
        elif name == "mlflow":
            trackers.append(MlflowTracker(tracking.mlflow))
        else:
            trackers.append(WandbTracker(tracking.wandb or WandbConfig(), layout))
    return trackers


def flat_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"trainer.training.lr": "0.0002", ...}`` (lists as JSON)."""
    params: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            params.update(flat_params(value, f"{name}."))
        else:
            params[name] = value if isinstance(value, str) else json.dumps(value)
    return params


def run_info(spec: JobSpec, layout: RunDir, tracker: str) -> RunInfo:
    """What a tracker's run is told: the resolved config (secret references only), the tags, a run to resume."""
    backend = "kubernetes" if os.environ.get(TRAINJOB_NAME_ENV) else "local"
    name = spec.name or os.environ.get(TRAINJOB_NAME_ENV) or layout.root.name
    config = spec.model_dump(mode="json", exclude={"function"})
    resume = read_tracking_file(layout).get(tracker, {}).get("run_id")
    tags = {"job": name, "runtime": spec.runtime or "none", "backend": backend}
    return RunInfo(name=name, params=flat_params(config), tags=tags, resume_id=resume)


class _Worker:
    """One tracker's thread: runs its calls in order, retrying a failing one with backoff."""

    def __init__(self, tracker: Tracker, strict: bool, retry_s: float, warn: Callable[[str], None]):
        self.tracker = tracker
        self.strict = strict
        self.retry_s = retry_s
        self.warn = warn
        self.calls: queue.Queue = queue.Queue()
        self.error: Exception | None = None
        self.failure = ""
        self.dropped = False
        self.warned = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"tracking-{tracker.name}", daemon=True)
        self.thread.start()

    def submit(self, what: str, call: Callable[[], Any]) -> None:
        self.calls.put((what, call))

    def _run(self) -> None:
        while True:
            item = self.calls.get()
            if item is None:
                self.calls.task_done()
                return
            what, call = item
            if not self.dropped and self.error is None:
                self._attempt(what, call)
            self.calls.task_done()

    def _attempt(self, what: str, call: Callable[[], Any]) -> None:
        first_failure = None
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                call()
            except Exception as err:  # any failure of a remote service: retried, never fatal to training
                message = f"{type(err).__name__}: {scrub(str(err)).splitlines()[0] if str(err) else ''}"
                if self.strict:
                    self.error = err
                    self.failure = f"{self.tracker.name}: {what} failed ({message})"
                    return
                now = time.monotonic()
                first_failure = first_failure or now
                if not self.warned:
                    self.warned = True
                    self.warn(
                        f"tracking: {self.tracker.name} failed to {what} ({message}); training goes on, "
                        f"retrying with backoff for up to {self.retry_s:.0f} s"
                    )
                if now - first_failure >= self.retry_s or self.stopping.is_set():
                    self.dropped = True
                    self.warn(f"tracking: gave up on {self.tracker.name} ({message}); its later records are dropped")
                    return
                self.stopping.wait(min(backoff, max(0.0, first_failure + self.retry_s - now)))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            else:
                if first_failure is not None:
                    self.warn(
                        f"tracking: {self.tracker.name} reachable again after {time.monotonic() - first_failure:.0f} s"
                    )
                return

    def close(self, wait_s: float) -> bool:
        """Let the queued calls finish for up to ``wait_s`` (then stop retrying); True when all ran."""
        self.calls.put(None)
        self.thread.join(wait_s)
        if self.thread.is_alive():
            self.stopping.set()
            self.thread.join(5.0)
        return not self.thread.is_alive() and not self.dropped


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class TrackingSession:
    """The trackers of one job on trainer rank 0.

    Args:
        spec: the job (``trainer.report_to``, ``trainer.tracking``, ``trainer.strict_tracking``).
        layout: its run directory.
        warn: where warnings go (stderr: the job's log).
    """

    def __init__(self, spec: JobSpec, layout: RunDir, warn: Callable[[str], None] = _stderr):
        self.spec = spec
        self.layout = layout
        self.strict = spec.trainer.strict_tracking
        self.trackers = build_trackers(spec, layout)
        self.warn = warn
        self.workers: list[_Worker] = []
        self.logged: set[tuple[int, str]] = set()
        self.runs = read_tracking_file(layout)
        self._lock = threading.Lock()

    def start(self, spec: JobSpec | None = None) -> None:
        """Open every tracker's run with ``spec`` (the resolved config) as params.

        Raises:
            TrackingError: ``strict_tracking`` and a tracker cannot start (before any training).
        """
        spec = spec or self.spec
        retry_s = spec.trainer.tracking.retry_s
        for tracker in self.trackers:
            info = run_info(spec, self.layout, tracker.name)
            worker = _Worker(tracker, self.strict, retry_s, self.warn)
            self.workers.append(worker)
            worker.submit("start its run", lambda tracker=tracker, info=info: self._started(tracker, info))
            if self.strict:
                worker.calls.join()
                self._raise_if_failed()

    def _started(self, tracker: Tracker, info: RunInfo) -> None:
        run_id = tracker.start(info)
        if run_id is not None:
            with self._lock:
                entry = {"run_id": run_id}
                if isinstance(tracker, MlflowTracker):
                    entry.update(tracking_uri=tracker.config.tracking_uri, experiment=tracker.config.experiment)
                self.runs[tracker.name] = entry
                _write_tracking_file(self.layout, self.runs)

    def _raise_if_failed(self) -> None:
        for worker in self.workers:
            if worker.error is not None:
                raise TrackingError(f"tracking (strict_tracking): {worker.failure}") from None

    def report(self, progress: Progress) -> None:
        """Log one progress record (a :class:`~kubetune.trainer.metrics.MetricsWriter` reporter)."""
        self.log_record(progress.to_json())

    def log_record(self, record: Mapping[str, Any]) -> None:
        """Log every numeric field of ``record`` at its step, on every tracker.

        Raises:
            TrackingError: ``strict_tracking`` and a tracker has failed.
        """
        self._raise_if_failed()
        step = int(record["step"])
        values = {key: value for key, value in metric_values(record).items() if (step, key) not in self.logged}
        if not values:
            return
        self.logged.update((step, key) for key in values)
        for worker in self.workers:
            worker.submit(f"log step {step}", lambda t=worker.tracker, v=values: t.log_metrics(step, v))

    def catch_up(self, records: list[Mapping[str, Any]]) -> None:
        """Log the values of ``records`` (``metrics.jsonl``) that no report carried (e.g. records added after
        a step, such as evaluation results)."""
        for record in records:
            self.log_record(record)

    def finish(self, status: str | None, artifacts: list[tuple[Path, str]] = (), wait_s: float = FINISH_WAIT_S) -> None:
        """Upload ``artifacts`` (path, name), end the runs with ``status`` (None: leave them to a resumed job) and
        wait for the trackers, at most ``wait_s``.

        Raises:
            TrackingError: ``strict_tracking`` and a tracker failed.
        """
        for worker in self.workers:
            for path, name in artifacts:
                if path.exists():
                    worker.submit(f"upload {name}", lambda t=worker.tracker, p=path, n=name: t.log_artifact(p, n))
            worker.submit("end its run", lambda t=worker.tracker: t.finish(status))
        deadline = time.monotonic() + wait_s
        for worker in self.workers:
            if not worker.close(max(0.0, deadline - time.monotonic())) and not worker.dropped and worker.error is None:
                self.warn(
                    f"tracking: {worker.tracker.name} did not catch up within {wait_s:.0f} s; the rest is dropped"
                )
        if self.strict and status is not None:
            self._raise_if_failed()
