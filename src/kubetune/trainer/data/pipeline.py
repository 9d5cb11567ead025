"""From a dataset config to tokenized train/eval examples, with every check done up front."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from kubetune.errors import DataError
from kubetune.spec.trainer import DatasetConfig
from kubetune.trainer.data.formats import Example, Tokenizer, class_names, map_columns
from kubetune.trainer.data.readers import read_rows


@dataclass
class PreparedData:
    """Tokenized examples and what happened on the way."""

    train: list[Example]
    eval: list[Example]
    rows_read: int
    truncated: int
    dropped_without_targets: int
    label_names: list[str] | None = None


def prepare_data(config: DatasetConfig, path: Path, tokenizer, max_seq_len: int, seed: int) -> PreparedData:
    """Read, map, validate and tokenize the dataset at ``path``; split off the eval share.

    ``dataset.split`` chooses the files of a split and a slice of their rows first, then
    ``dataset.max_samples`` caps the rows.

    Raises:
        DataError: unreadable files, missing columns, invalid rows, a split that selects no row, or no
            usable example.
    """
    split = config.parsed_split()
    rows = read_rows(path, split=None if split is None else split.name)
    if split is not None and split.is_sliced:
        rows = split.select(rows)
        if not rows:
            raise DataError(f"{path}: dataset.split {str(split)!r} selects no row")
    if config.max_samples is not None:
        rows = rows[: config.max_samples]
    rows = map_columns(rows, config, source=str(path))
    label_names = class_names(rows, config, str(path)) if config.format in ("classification", "tagging") else None
    tokenize = Tokenizer(tokenizer, config, max_seq_len, label_names)
    examples: list[Example] = []
    dropped = 0
    for index, row in enumerate(rows):
        example = tokenize(row, where=f"{path}: row {index}")
        if example.num_targets == 0:
            dropped += 1
            continue
        examples.append(example)
    if not examples:
        raise DataError(
            f"{path}: no example has a target token left (all {len(rows)} rows were dropped; "
            f"is training.max_seq_len={max_seq_len} shorter than the prompts?)"
        )
    eval_examples: list[Example] = []
    if config.eval_fraction > 0:
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(examples) * config.eval_fraction))
        if n_eval >= len(examples):
            raise DataError(f"{path}: dataset.eval_fraction leaves no training example")
        eval_ids = set(order[:n_eval])
        eval_examples = [ex for i, ex in enumerate(examples) if i in eval_ids]
        examples = [ex for i, ex in enumerate(examples) if i not in eval_ids]
    return PreparedData(examples, eval_examples, len(rows), tokenize.truncated, dropped, label_names)
