"""From a dataset config to tokenized train/eval examples, with every check done up front."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubetune.errors import DataError
from kubetune.spec.trainer import DatasetConfig
from kubetune.trainer.data.formats import Example, Tokenizer, class_names, map_columns
from kubetune.trainer.data.kto import KtoExample, KtoTokenizer, check_both_labels, pair_mismatched
from kubetune.trainer.data.preference import PreferenceExample, PreferenceTokenizer
from kubetune.trainer.data.readers import DatasetRows, read_rows


@dataclass
class PreparedData:
    """Tokenized examples and what happened on the way."""

    train: list[Example] | list[PreferenceExample] | list[KtoExample]
    eval: list[Example] | list[PreferenceExample] | list[KtoExample]
    rows_read: int
    truncated: int
    dropped_without_targets: int
    label_names: list[str] | None = None


@dataclass
class TokenizedRows:
    """The examples rows became, and what was cut or dropped on the way."""

    examples: list[Example] | list[PreferenceExample] | list[KtoExample]
    truncated: int
    dropped_without_targets: int
    label_names: list[str] | None


def tokenize_rows(read: DatasetRows, config: DatasetConfig, path: Path, tokenizer, max_seq_len: int) -> TokenizedRows:
    """Map, check and tokenize rows; drop those left without a target token.

    The pre-launch check runs this on a sample of rows, the trainer on all of them.

    Raises:
        DataError: missing columns, invalid rows, no chat template for ``messages``, or no
            example with a target token left.
    """
    rows = map_columns(read.rows, config, read.places)
    with_labels = config.format in ("classification", "tagging")
    label_names = class_names(rows, config, read.places, str(path)) if with_labels else None
    tokenizer_class = {"preference": PreferenceTokenizer, "kto": KtoTokenizer}.get(config.format, Tokenizer)
    tokenize = tokenizer_class(tokenizer, config, max_seq_len, label_names)
    examples: list = []
    dropped = 0
    for row, place in zip(rows, read.places, strict=True):
        example = tokenize(row, where=place)
        if example.num_targets == 0:
            dropped += 1
            continue
        examples.append(example)
    if not examples:
        raise DataError(
            f"{path}: no example has a target token left (all {len(rows)} rows were dropped; "
            f"is training.max_seq_len={max_seq_len} shorter than the prompts?)"
        )
    return TokenizedRows(examples, tokenize.truncated, dropped, label_names)


def read_dataset(config: DatasetConfig, path: Path, limit: int | None = None) -> DatasetRows:
    """The rows training uses: ``dataset.split`` chooses the files of a split and a slice of
    their rows, then ``dataset.max_samples`` caps them. With ``limit`` (the pre-launch sample),
    the first ``limit`` rows of the split's files, unsliced.

    Raises:
        DataError: unreadable files, or a split that selects no row.
    """
    split = config.parsed_split()
    read = read_rows(path, limit=limit, split=None if split is None else split.name)
    if limit is None and split is not None and split.is_sliced:
        read = read.pick(split.select(range(len(read))))
        if not read:
            raise DataError(f"{path}: dataset.split {str(split)!r} selects no row")
    if config.max_samples is not None:
        read = read.head(config.max_samples)
    return read


def prepare_data(
    config: DatasetConfig,
    path: Path,
    tokenizer,
    max_seq_len: int,
    seed: int,
    on_read: Callable[[int], None] | None = None,
    batch_size: int = 2,
) -> PreparedData:
    """Read, map, validate and tokenize the dataset at ``path``; split off the eval share.

    ``on_read(rows)`` is called once the rows are read, before tokenizing them. ``kto`` rows
    get their mismatched completions in blocks of ``batch_size`` rows (see
    :func:`~kubetune.trainer.data.kto.pair_mismatched`), train and eval rows separately.

    Raises:
        DataError: unreadable files, missing columns, invalid rows, a split that selects no row, or no
            usable example.
    """
    read = read_dataset(config, path)
    if on_read is not None:
        on_read(len(read))
    tokenized = tokenize_rows(read, config, path, tokenizer, max_seq_len)
    examples = tokenized.examples
    if config.format == "kto":
        check_both_labels(examples, path)
    eval_examples: list = []
    if config.eval_fraction > 0:
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(examples) * config.eval_fraction))
        if n_eval >= len(examples):
            raise DataError(f"{path}: dataset.eval_fraction leaves no training example")
        eval_ids = set(order[:n_eval])
        eval_examples = [ex for i, ex in enumerate(examples) if i in eval_ids]
        examples = [ex for i, ex in enumerate(examples) if i not in eval_ids]
    if config.format == "kto":
        for part in (examples, eval_examples):
            pair_mismatched(part, batch_size, max_seq_len)
    return PreparedData(
        examples,
        eval_examples,
        len(read),
        tokenized.truncated,
        tokenized.dropped_without_targets,
        tokenized.label_names,
    )
