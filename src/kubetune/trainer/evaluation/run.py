"""Evaluate a model given by path (or job output) on a held-out file: what ``kubetune eval`` and
``TrainerClient.evaluate`` run. Every input is checked by its files before a model is loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kubetune.contracts.evaluation import EvalReport
from kubetune.spec.evaluation import EvaluationConfig
from kubetune.spec.job import load_job_file
from kubetune.spec.trainer import DatasetConfig
from kubetune.trainer.evaluation.models import ModelTarget, load_target
from kubetune.trainer.evaluation.prompts import build_eval_set, infer_format, read_eval_rows
from kubetune.trainer.model_files import resolve_local

#: Called with (rows done, rows in all) as answers come in.
ProgressCallback = Callable[[int, int], None]


def job_dataset(target: ModelTarget) -> DatasetConfig | None:
    """The dataset config of the job whose output ``target`` is, if any: its format, column map,
    preprocess and labels read the held-out file as training read its data."""
    if target.run is None or not target.run.config_file.is_file():
        return None
    run = target.run
    spec = load_job_file(run.config_file)
    return spec.trainer.dataset if spec.trainer_kind == "builtin" else None


def checked_inputs(
    evaluation: EvaluationConfig, dataset: DatasetConfig | None
) -> tuple[Path, EvaluationConfig, DatasetConfig | None]:
    """The held-out file's local path and the settings to read it with, its rows checked (no model loaded).

    A file scored without a job's dataset config and without a format gets the format its columns
    show (:func:`~kubetune.trainer.evaluation.prompts.infer_format`).

    Raises:
        ConfigError, DataError: one line naming the file (and row, column) that cannot be scored.
    """
    path = resolve_local(evaluation.file, Path(), "evaluation file")
    if evaluation.format is None and dataset is None:
        evaluation = evaluation.model_copy(update={"format": infer_format(path)})
    read_eval_rows(evaluation, dataset, path)
    return path, evaluation, dataset


def evaluate_target(
    target: ModelTarget,
    evaluation: EvaluationConfig,
    dataset: DatasetConfig | None = None,
    on_progress: ProgressCallback | None = None,
    device: str | None = None,
) -> EvalReport:
    """Load ``target`` and score it on ``evaluation.file`` (see :func:`checked_inputs` for the checks first)."""
    from kubetune.trainer.evaluation.scoring import score_model

    path, evaluation, dataset = checked_inputs(evaluation, dataset)
    model, tokenizer = load_target(target, device)
    label_names = None
    if target.task != "causal-lm":
        label_names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    eval_set = build_eval_set(evaluation, dataset, path, tokenizer, label_names)
    done = 0

    def rows(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(done, len(eval_set.items))

    if on_progress is not None:
        on_progress(0, len(eval_set.items))
    return score_model(
        model, tokenizer, eval_set, evaluation.max_new_tokens, evaluation.batch_size, target.label, on_rows=rows
    )
