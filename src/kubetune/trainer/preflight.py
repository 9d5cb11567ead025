"""Checks of a builtin-trainer job run before launch: the model, the dataset and how they fit.

The local backend runs :func:`preflight_problems` at ``train()`` time and ``kubetune validate``
runs the same, so a missing model, a bad dataset row, a row format the tokenizer cannot
train on or LoRA target modules the model lacks fail at once, with one line naming the field,
file, row and column, instead of after workers have started. The trainer repeats the checks
(it reads the whole dataset; this reads its first rows).

Importing this module is light (no torch); reading the tokenizer and the model's module names
imports transformers, only when a local model is there to read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

from kubetune.errors import KubetuneError
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.data.formats import map_columns
from kubetune.trainer.data.pipeline import read_dataset, tokenize_rows
from kubetune.trainer.data.readers import DatasetRows
from kubetune.trainer.evaluation.prompts import read_eval_rows
from kubetune.trainer.model_files import pretrained_location, resolve_local

#: The job field of the held-out file (in messages).
EVALUATION_FIELD = "trainer.evaluation.file"
#: How many rows of the dataset the check reads.
SAMPLE_ROWS = 1000

T = TypeVar("T")


class Source(NamedTuple):
    """A local model or dataset to check, and the job field that names it (for messages)."""

    field: str
    value: str


def preflight_problems(config: LLMConfig, model: Source | None, dataset: Source | None) -> list[KubetuneError]:
    """Every problem found in the model and dataset a job will train on (empty: all good).

    Args:
        config: the job's LLM Trainer config.
        model: the local model to check (``None``: fetched by a remote initializer, nothing here yet).
        dataset: the local dataset to check (``None`` likewise).

    Returns:
        The problems, in order: model files, dataset files and rows (format, column types, chat
        turns), the ``evaluation:`` file's rows, LoRA target modules, then rows tokenized (chat
        template, a target token left).
    """
    problems: list[KubetuneError] = []

    def attempt(field: str | None, check: Callable[[], T], path: Path | None = None) -> T | None:
        try:
            return check()
        except KubetuneError as err:
            problems.append(err if field is None else _named(err, field, path))
            return None

    model_path = dataset_path = None
    if model is not None:
        model_path = attempt(model.field, lambda: local_path(model))
        if model_path is not None and attempt(model.field, lambda: pretrained_location(model_path), model_path) is None:
            model_path = None
    read = None
    if dataset is not None:
        dataset_path = attempt(dataset.field, lambda: local_path(dataset))
        if dataset_path is not None:
            read = attempt(dataset.field, lambda: _sample(config, dataset_path), dataset_path)
    if config.evaluation is not None:
        attempt(EVALUATION_FIELD, lambda: _evaluation_rows(config))
    if model_path is None:
        return problems
    from kubetune.trainer.model_loading import check_target_modules, load_tokenizer

    tokenizer = attempt(model.field, lambda: load_tokenizer(model_path, config.model), model_path)
    if tokenizer is None:
        return problems  # the same model problem would repeat below
    attempt(None, lambda: check_target_modules(model_path, config))
    if read is not None:
        max_seq_len = config.training.max_seq_len
        attempt(None, lambda: tokenize_rows(read, config.dataset, dataset_path, tokenizer, max_seq_len))
    return problems


def local_path(source: Source) -> Path:
    """The local path behind a source (a path, ``file://`` or ``pkg://`` URI).

    Raises:
        ConfigError: a remote URI, or a ``pkg://`` file that is not installed.
    """
    return resolve_local(source.value, Path(), source.field)


def _sample(config: LLMConfig, path: Path) -> DatasetRows:
    """The first rows of the split training reads, mapped and checked (columns, types, chat turns)."""
    read = read_dataset(config.dataset, path, limit=SAMPLE_ROWS)
    map_columns(read.rows, config.dataset, read.places)
    return read


def _evaluation_rows(config: LLMConfig) -> DatasetRows:
    """The held-out rows of the ``evaluation:`` section, read and checked against its format."""
    path = local_path(Source(EVALUATION_FIELD, config.evaluation.file))
    return read_eval_rows(config.evaluation, config.dataset, path)


def _named(err: KubetuneError, field: str, path: Path | None) -> KubetuneError:
    """The error with the job field in front, unless it already names the field or the file."""
    text = str(err)
    if text.startswith(field) or (path is not None and text.startswith(str(path))):
        return err
    return type(err)(f"{field}: {text}")
