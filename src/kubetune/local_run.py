"""Run a job in the calling process: the simplest way to fine-tune on this machine."""

from __future__ import annotations

import time
from pathlib import Path

from kubetune.spec.job import JobSpec, load_job_file


def default_run_dir(spec: JobSpec) -> Path:
    """``./runs/<name>-<timestamp>`` for a job that names no output directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{spec.name or 'job'}-{stamp}"


def fine_tune(job: JobSpec | str | Path, output_dir: str | Path | None = None):
    """Fine-tune in this process (one worker) and return a :class:`~kubetune.trainer.run.TrainResult`.

    Args:
        job: a :class:`JobSpec` or the path of a job YAML file.
        output_dir: run directory; overrides the spec's ``output_dir``.

    Raises:
        KubetuneError: the spec, model or dataset is invalid (before any training step).
    """
    from kubetune.trainer.run import run_training

    spec = load_job_file(job) if isinstance(job, str | Path) else job
    run_dir = Path(output_dir or spec.output_dir or default_run_dir(spec)).resolve()
    spec = spec.model_copy(update={"output_dir": str(run_dir)})
    return run_training(spec, run_dir)
