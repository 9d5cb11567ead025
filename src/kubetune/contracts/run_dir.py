"""Every name in a run directory and in the local backend's data directory, built in one place.

A run directory is the contract between a backend and its workers, the same on local disk and
on a Kubernetes shared volume::

    <run>/model/      written by the model initializer (the trainer's default model path)
    <run>/dataset/    written by the dataset initializer (the trainer's default dataset path)
    <run>/cache/torch-compile/  compiled graphs (training.compile), reused when the job restarts
    <run>/output/
        config.yaml       the resolved job spec (secrets only as references)
        phase.json        what trainer rank 0 is doing (kubetune.contracts.progress.PhaseRecord)
        metrics.jsonl     one progress record per logged step (kubetune.contracts.progress)
        checkpoints/      complete checkpoints only
        adapter/ merged/  final exports
        loss.png          the loss curve
        evaluation.json   the last report of the evaluation: section
        reference_logps.pt  DPO with precompute_reference: each pair's reference log-probs
        tensorboard/      event files (report_to: tensorboard)
        wandb/            W&B run files (report_to: wandb)
        tracking.json     the tracker runs of this job (resumed runs continue them; the exporter registers)
        push.json         what the exporter pushed (output.push_to), with checksums
        returns/          a custom trainer's return values, rank-<RANK>.pkl
    <run>/output.prev-<UTC time>/   earlier outputs, moved aside by a replacing job

The local backend's data directory (``$KUBETUNE_HOME``)::

    jobs.db                   job store (SQLite, WAL)
    runs/<job>/               run directory, unless the job names one
    logs/<job>/<step>.log     model-initializer, dataset-initializer, node-0..., supervisor
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SourceKind = Literal["model", "dataset"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("model", "dataset")
CONFIG_FILE_NAME = "config.yaml"  # also the key of the job's ConfigMap on Kubernetes
PHASE_FILE_NAME = "phase.json"
#: ``<run>/output`` moved aside by a replacing job becomes ``<run>/output.prev-<UTC timestamp>``.
PREVIOUS_OUTPUT_PREFIX = "output.prev-"
_RETURN_PREFIX = "rank-"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory rooted at ``root``."""

    root: Path

    def source(self, kind: SourceKind) -> Path:
        """``<run>/model`` or ``<run>/dataset``: where that initializer writes and the trainer reads."""
        return self.root / kind

    @property
    def model(self) -> Path:
        """``<run>/model``."""
        return self.source("model")

    @property
    def dataset(self) -> Path:
        """``<run>/dataset``."""
        return self.source("dataset")

    @property
    def compile_cache(self) -> Path:
        """``<run>/cache/torch-compile``: compiled graphs, kept across restarts of the job."""
        return self.root / "cache" / "torch-compile"

    @property
    def output(self) -> Path:
        """``<run>/output``: everything the workers write."""
        return self.root / "output"

    @property
    def config_file(self) -> Path:
        """``output/config.yaml``: the resolved job spec."""
        return self.output / CONFIG_FILE_NAME

    @property
    def metrics_file(self) -> Path:
        """``output/metrics.jsonl``: one progress record per logged step."""
        return self.output / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        """``output/checkpoints``."""
        return self.output / "checkpoints"

    @property
    def adapter(self) -> Path:
        """``output/adapter``: the PEFT adapter."""
        return self.output / "adapter"

    @property
    def merged(self) -> Path:
        """``output/merged``: the merged model and tokenizer."""
        return self.output / "merged"

    @property
    def loss_curve(self) -> Path:
        """``output/loss.png``."""
        return self.output / "loss.png"

    @property
    def evaluation_report(self) -> Path:
        """``output/evaluation.json``: the last report of the job's ``evaluation:`` section, every row."""
        return self.output / "evaluation.json"

    @property
    def reference_logps(self) -> Path:
        """``output/reference_logps.pt`` (DPO's precomputed reference log-probs, reused on resume)."""
        return self.output / "reference_logps.pt"

    @property
    def tensorboard(self) -> Path:
        """``output/tensorboard``."""
        return self.output / "tensorboard"

    @property
    def wandb(self) -> Path:
        """``output/wandb``: W&B run files (offline runs stay here for ``wandb sync``)."""
        return self.output / "wandb"

    @property
    def tracking_file(self) -> Path:
        """``output/tracking.json``: the tracker run ids of this job (:mod:`kubetune.tracking`)."""
        return self.output / "tracking.json"

    @property
    def push_manifest(self) -> Path:
        """``output/push.json``: the files the exporter pushed and their checksums (:mod:`kubetune.exporter`)."""
        return self.output / "push.json"

    @property
    def returns(self) -> Path:
        """``output/returns``: a custom trainer's return values."""
        return self.output / "returns"

    def return_file(self, rank: int) -> Path:
        """``output/returns/rank-<rank>.pkl``: the return value of worker ``rank``."""
        return self.returns / f"{_RETURN_PREFIX}{rank}.pkl"

    def return_files(self) -> dict[int, Path]:
        """The return-value files present, by rank."""
        return {
            int(path.stem.removeprefix(_RETURN_PREFIX)): path
            for path in sorted(self.returns.glob(f"{_RETURN_PREFIX}*.pkl"))
        }


@dataclass(frozen=True)
class LocalHome:
    """The local backend's data directory (``$KUBETUNE_HOME``, default ``~/.kubetune``)."""

    root: Path

    @property
    def jobs_db(self) -> Path:
        """``jobs.db``: the SQLite job store."""
        return self.root / "jobs.db"

    def run_dir(self, job: str) -> Path:
        """``runs/<job>``: the run directory of a job that names none."""
        return self.root / "runs" / job

    def log_dir(self, job: str) -> Path:
        """``logs/<job>``: one log file per step."""
        return self.root / "logs" / job

    def log_file(self, job: str, step: str) -> Path:
        """``logs/<job>/<step>.log``."""
        return self.log_dir(job) / f"{step}.log"

    @property
    def studies_db(self) -> Path:
        """``studies.db``: the Optuna storage (SQLite) of every hyperparameter study, on any backend."""
        return self.root / "studies.db"

    def study_dir(self, study: str) -> Path:
        """``studies/<study>``: a study's plot (``history.png``)."""
        return self.root / "studies" / study

    def study_plot(self, study: str) -> Path:
        """``studies/<study>/history.png``: objective by trial and against each searched parameter."""
        return self.study_dir(study) / "history.png"
