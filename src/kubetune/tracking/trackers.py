"""The trackers behind ``report_to``: one interface, one class per service.

A :class:`Tracker` is driven by :class:`~kubetune.tracking.session.TrackingSession` from a
background thread of trainer rank 0, so a slow or unreachable service never holds up a training
step. Each method may raise; the session retries it with backoff. Every tracker gets the same
things: the resolved config as params, tags (job name, runtime, backend), every numeric field of
every progress record per step, and files as artifacts (``loss.png``; ``adapter/`` when asked).
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError
from kubetune.initializers.secrets import read_secret
from kubetune.spec.tracking import MlflowConfig, WandbConfig

#: Progress fields that are the step itself, not a metric.
_NOT_METRICS = {"step", "total_steps"}


@dataclass(frozen=True)
class RunInfo:
    """What every tracker's run is told at its start.

    Attributes:
        name: the job name (the run name unless the tracker's config names one).
        params: the resolved config, flattened to dotted keys.
        tags: ``job``, ``runtime`` and ``backend``.
        resume_id: the tracker's run id from an earlier attempt of this job (continue it), or None.
    """

    name: str
    params: Mapping[str, str]
    tags: Mapping[str, str]
    resume_id: str | None = None


def metric_values(record: Mapping[str, object], prefix: str = "") -> dict[str, float]:
    """The numeric fields of a progress record (nested mappings as ``outer/inner``), without the step."""
    values: dict[str, float] = {}
    for key, value in record.items():
        if not prefix and key in _NOT_METRICS:
            continue
        if isinstance(value, Mapping):
            values.update(metric_values(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[f"{prefix}{key}"] = float(value)
    return values


class Tracker(ABC):
    """One experiment tracker's run."""

    name: str

    @abstractmethod
    def start(self, run: RunInfo) -> str | None:
        """Open (or continue) the run; returns its id for ``tracking.json`` (None: nothing to keep)."""

    @abstractmethod
    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Record ``values`` at ``step``."""

    @abstractmethod
    def log_artifact(self, path: Path, name: str) -> None:
        """Upload a file or folder under ``name``."""

    @abstractmethod
    def finish(self, status: str | None) -> None:
        """Flush and close; ``status`` (``FINISHED``, ``FAILED``) ends the run, None leaves it open to resume."""


class TensorBoardTracker(Tracker):
    """Event files in ``output/tensorboard`` (scalars ``train/<field>``, the config as text)."""

    name = "tensorboard"

    def __init__(self, layout: RunDir):
        self.log_dir = layout.tensorboard
        self.writer = None

    def start(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.writer.add_text("tags", "\n".join(f"{k}: {v}" for k, v in run.tags.items()))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in run.params.items()))
        return None

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"train/{key}", value, global_step=step)
        self.writer.flush()

    def log_artifact(self, path: Path, name: str) -> None:
        """TensorBoard keeps no files: the event files live next to the artifacts in ``output/``."""

    def finish(self, status: str | None) -> None:
        if self.writer is not None:
            self.writer.close()


class MlflowTracker(Tracker):
    """A run of an MLflow tracking server, through ``MlflowClient`` (no process-global active run)."""

    name = "mlflow"
    #: MLflow's own HTTP retries (7, with long backoff) would stall each call; the session retries instead.
    HTTP_ENV: ClassVar[dict[str, str]] = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
    _BATCH = 100

    def __init__(self, config: MlflowConfig):
        self.config = config
        self.client = None
        self.run_id: str | None = None

    def connect(self):
        """The client, with the credentials read from their references into this process's environment."""
        if self.client is None:
            for key, value in self.HTTP_ENV.items():
                os.environ.setdefault(key, value)
            set_mlflow_credentials(self.config)
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=self.config.tracking_uri)
        return self.client

    def start(self, run: RunInfo) -> str:
        from mlflow.entities import Param, RunTag

        client = self.connect()
        if run.resume_id is not None:
            client.update_run(run.resume_id, status="RUNNING")
            self.run_id = run.resume_id
            return self.run_id
        experiment = client.get_experiment_by_name(self.config.experiment)
        experiment_id = (
            experiment.experiment_id if experiment is not None else client.create_experiment(self.config.experiment)
        )
        created = client.create_run(
            experiment_id,
            run_name=self.config.run_name or run.name,
            tags={f"kubetune.{k}": v for k, v in run.tags.items()},
        )
        self.run_id = created.info.run_id
        params = [Param(key, value[:6000]) for key, value in run.params.items()]
        for i in range(0, len(params), self._BATCH):
            client.log_batch(self.run_id, params=params[i : i + self._BATCH])
        client.log_batch(self.run_id, tags=[RunTag("mlflow.runName", self.config.run_name or run.name)])
        return self.run_id

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for i in range(0, len(metrics), self._BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + self._BATCH])

    def log_artifact(self, path: Path, name: str) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path=None if name == path.name else name)

    def finish(self, status: str | None) -> None:
        if status is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status)


def set_mlflow_credentials(config: MlflowConfig) -> None:
    """Put the tracking server's credentials where MLflow's client reads them (this process only)."""
    if config.token is not None:
        os.environ["MLFLOW_TRACKING_TOKEN"] = read_secret(config.token, "tracking.mlflow.token")
    if config.password is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = config.username or ""
        os.environ["MLFLOW_TRACKING_PASSWORD"] = read_secret(config.password, "tracking.mlflow.password")


class WandbTracker(Tracker):
    """A W&B run; offline mode writes it under ``output/wandb`` for ``wandb sync``."""

    name = "wandb"

    def __init__(self, config: WandbConfig, layout: RunDir):
        self.config = config
        self.dir = layout.wandb
        self.run = None  # wandb.init(dir=D) writes into D/wandb: D is output/

    def start(self, run: RunInfo) -> str:
        import wandb

        settings = {"silent": True, "console": "off"}  # the trainer's own output stays as it is
        if self.config.base_url is not None:
            settings["base_url"] = self.config.base_url
        if self.config.mode == "online":
            if self.config.api_key is None:
                raise ConfigError("tracking.wandb.api_key: online mode needs an API key reference")
            settings["api_key"] = read_secret(self.config.api_key, "tracking.wandb.api_key")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.config.project,
            entity=self.config.entity,
            name=self.config.run_name or run.name,
            id=run.resume_id,
            resume="allow" if run.resume_id else None,
            dir=str(self.dir.parent),
            mode=self.config.mode,
            config=dict(run.params),
            tags=[f"{k}:{v}" for k, v in run.tags.items()],
            settings=wandb.Settings(**settings),
            reinit="create_new",
        )
        return self.run.id

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def log_artifact(self, path: Path, name: str) -> None:
        import wandb

        artifact = wandb.Artifact(name.replace("/", "-").replace(".", "-"), type="model" if path.is_dir() else "file")
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def finish(self, status: str | None) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status in (None, "FINISHED") else 1)


def tensorboard_available() -> bool:
    """True when TensorBoard event files can be written."""
    return importlib.util.find_spec("tensorboard") is not None


def required_package(tracker: str) -> str | None:
    """The Python package a tracker needs that is not installed here, or None."""
    package = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}[tracker]
    return None if importlib.util.find_spec(package) is not None else package
