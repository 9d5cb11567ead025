"""Held-out rows to prompts and reference answers, rendered by the trainer's own format code.

The rows are read by :mod:`kubetune.trainer.data.readers`, mapped and checked by
:func:`~kubetune.trainer.data.formats.map_columns` and rendered by the format's tokenizer
(:meth:`~kubetune.trainer.data.formats.Tokenizer.prompt_and_reference`), so a prompt is the
exact token sequence training put before the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubetune.errors import ConfigError, DataError
from kubetune.spec.evaluation import CLASSIFICATION_FORMATS, EvaluationConfig, check_metrics, default_metrics
from kubetune.spec.trainer import DatasetConfig
from kubetune.trainer.data.formats import Tokenizer, map_columns
from kubetune.trainer.data.pipeline import read_dataset, tokenize_rows
from kubetune.trainer.data.preference import PreferenceTokenizer
from kubetune.trainer.data.readers import DatasetRows


@dataclass(frozen=True)
class EvalItem:
    """One held-out row: where it is, its prompt tokens, and the reference (an answer or a class name).

    ``label`` is the reference class index of a classification row (None otherwise).
    """

    place: str
    prompt_ids: list[int]
    reference: str
    label: int | None = None


@dataclass(frozen=True)
class EvalSet:
    """The rows to score, the metrics to score them with, and the classes (classification)."""

    file: Path
    data_format: str
    metrics: list[str]
    items: list[EvalItem]
    label_names: list[str] | None = None

    @property
    def classifies(self) -> bool:
        """Whether rows are scored by a predicted class instead of a generated answer."""
        return self.data_format in CLASSIFICATION_FORMATS


def eval_dataset_config(
    evaluation: EvaluationConfig, dataset: DatasetConfig | None = None, label_names: list[str] | None = None
) -> DatasetConfig:
    """The dataset config the held-out file is read with: the training dataset's column mapping and
    labels (a classifier's own classes when given), the evaluation's file, format and row cap."""
    base = dataset or DatasetConfig()
    update = {
        "path": evaluation.file,
        "format": evaluation.format or base.format,
        "split": None,
        "max_samples": evaluation.max_samples,
        "eval_fraction": 0.0,
    }
    if label_names is not None:
        update["labels"] = list(label_names)
    return base.model_copy(update=update)


#: The columns that tell a file's format when none is given, most specific first.
_FORMAT_COLUMNS = (
    ("messages", ("messages",)),
    ("preference", ("prompt", "chosen", "rejected")),
    ("alpaca", ("instruction", "output")),
    ("completion", ("prompt", "completion")),
    ("classification", ("text", "label")),
)


def infer_format(path: Path) -> str:
    """The format of a held-out file from the columns of its first row (for files scored without a job).

    Raises:
        DataError: the file is unreadable, or its columns fit no format that can be scored.
    """
    from kubetune.trainer.data.readers import read_rows

    first = read_rows(path, limit=1)
    columns = set(first.rows[0])
    for data_format, needed in _FORMAT_COLUMNS:
        if columns >= set(needed):
            return data_format
    raise DataError(
        f"{first.places[0]}: cannot tell the format from the columns {sorted(columns)}; give the format "
        "(alpaca: instruction/output, completion: prompt/completion, messages, preference, classification: text/label)"
    )


def read_eval_rows(evaluation: EvaluationConfig, dataset: DatasetConfig | None, path: Path) -> DatasetRows:
    """Read and check the held-out rows without a tokenizer: cheap, so bad input fails before a model loads.

    Raises:
        ConfigError: the format cannot be scored with these metrics.
        DataError: naming the file (and row, column) that is missing, unreadable or of another format.
    """
    config = eval_dataset_config(evaluation, dataset)
    try:
        check_metrics(config.format, evaluation.metrics)
    except ValueError as err:
        raise ConfigError(f"evaluation: {err}") from None
    read = read_dataset(config, path)
    map_columns(read.rows, config, read.places)
    return read


def build_eval_set(
    evaluation: EvaluationConfig,
    dataset: DatasetConfig | None,
    path: Path,
    tokenizer,
    label_names: list[str] | None = None,
) -> EvalSet:
    """The prompts and references of the held-out file at ``path``.

    Args:
        evaluation: the evaluation settings (file format, metrics, row cap).
        dataset: the training dataset config (column map, preprocess, labels), if any.
        path: the local held-out file or folder.
        tokenizer: the model's tokenizer (its chat template renders ``messages`` prompts).
        label_names: a classifier's classes in index order (its ``id2label``).

    Raises:
        DataError: unreadable file, rows of another format, labels the classifier does not have.
    """
    config = eval_dataset_config(evaluation, dataset, label_names)
    read = read_eval_rows(evaluation, dataset, path)
    metrics = list(evaluation.metrics or default_metrics(config.format))
    if config.format in CLASSIFICATION_FORMATS:
        tokenized = tokenize_rows(read, config, path, tokenizer, max_seq_len=tokenizer.model_max_length)
        names = tokenized.label_names or []
        items = [
            EvalItem(place, example.input_ids, names[example.class_label], example.class_label)
            for place, example in zip(read.places, tokenized.examples, strict=True)
        ]
        return EvalSet(path, config.format, metrics, items, names)
    rows = map_columns(read.rows, config, read.places)
    render = (PreferenceTokenizer if config.format == "preference" else Tokenizer)(tokenizer, config, max_seq_len=0)
    items = []
    for row, place in zip(rows, read.places, strict=True):
        prompt_ids, reference = render.prompt_and_reference(row, place)
        items.append(EvalItem(place, prompt_ids, reference))
    return EvalSet(path, config.format, metrics, items)
