"""Group examples into padded batches, in a seeded order that every rank agrees on."""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch

from kubetune.trainer.data.formats import IGNORE_INDEX, Example


def epoch_order(num_examples: int, epoch: int, seed: int) -> list[int]:
    """A permutation of example indices, the same on every rank for a given epoch and seed."""
    order = list(range(num_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def collate(examples: list[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad examples to the longest one; padding is masked out of attention and loss."""
    longest = max(len(ex.input_ids) for ex in examples)
    input_ids = torch.full((len(examples), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        input_ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        attention[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def micro_batches(
    examples: list[Example], batch_size: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1
) -> Iterator[list[Example]]:
    """Yield this rank's micro-batches for one epoch (a trailing partial batch is kept)."""
    order = epoch_order(len(examples), epoch, seed)
    global_batch = batch_size * world_size
    for start in range(0, len(order), global_batch):
        chunk = order[start : start + global_batch]
        mine = chunk[rank::world_size]
        if mine:
            yield [examples[i] for i in mine]
