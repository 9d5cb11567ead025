"""Group examples into padded batches, in a seeded order that every rank agrees on."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import torch

from kubetune.trainer.data.formats import IGNORE_INDEX, Example

#: The batch key of token-classification targets (one class per position, not shifted like ``labels``).
TAG_LABELS = "tag_labels"


def epoch_order(num_examples: int, epoch: int, seed: int) -> list[int]:
    """A permutation of example indices, the same on every rank for a given epoch and seed."""
    order = list(range(num_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def collate(examples: list[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad examples to the longest one; padding is masked out of attention and loss.

    Language-modelling examples give ``labels`` of shape (batch, length); classification
    examples give one class index per row, shape (batch,); tagged (token-classification)
    examples give ``tag_labels`` of shape (batch, length).
    """
    longest = max(len(ex.input_ids) for ex in examples)
    input_ids = torch.full((len(examples), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        input_ids[row, :n] = torch.tensor(ex.input_ids)
        if ex.class_label is None:
            labels[row, :n] = torch.tensor(ex.labels)
        attention[row, :n] = 1
    if examples[0].class_label is not None:
        labels = torch.tensor([ex.class_label for ex in examples], dtype=torch.long)
    key = TAG_LABELS if examples[0].tagged else "labels"
    return {"input_ids": input_ids, key: labels, "attention_mask": attention}


def micro_batches_per_epoch(num_examples: int, batch_size: int, world_size: int = 1) -> int:
    """How many micro-batches each rank gets per epoch (see :func:`micro_batches`)."""
    full, rest = divmod(num_examples, batch_size * world_size)
    return full + (1 if rest >= world_size else 0)


def micro_batches(
    examples: list[Example], batch_size: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1
) -> Iterator[list[Example]]:
    """Yield this rank's micro-batches for one epoch.

    Each global batch of ``batch_size * world_size`` examples is split between the ranks by
    :func:`balanced_shares`, so every rank yields the same number of micro-batches (a rank that
    ran out would leave the others waiting in the gradient all-reduce) holding about the same
    number of tokens (a rank with more would leave the others waiting too). A trailing partial
    batch is kept when it gives every rank at least one example; otherwise its fewer than
    ``world_size`` examples are skipped this epoch (the shuffle puts different ones last each
    epoch).
    """
    order = epoch_order(len(examples), epoch, seed)
    global_batch = batch_size * world_size
    for start in range(0, len(order), global_batch):
        chunk = order[start : start + global_batch]
        if len(chunk) < world_size:
            return
        share = balanced_shares([len(examples[i].input_ids) for i in chunk], world_size)[rank]
        yield [examples[chunk[i]] for i in share]


def balanced_shares(lengths: list[int], world_size: int) -> list[list[int]]:
    """Split positions ``0..len(lengths)-1`` between ranks: equal counts (within one), even token totals.

    Longest first, each position goes to the rank with the fewest tokens among those still
    below their count (greedy longest-processing-time). The split is a pure function of the
    lengths, so every rank computes the same one; each share keeps the original order. The
    loss is normalised by the global number of targets (see ``train_step``), so which rank
    holds an example does not change the step's gradient.
    """
    if world_size == 1:
        return [list(range(len(lengths)))]
    capacity = [len(lengths) // world_size + (1 if r < len(lengths) % world_size else 0) for r in range(world_size)]
    tokens = [0] * world_size
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for position in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        rank = min((r for r in range(world_size) if len(shares[r]) < capacity[r]), key=lambda r: (tokens[r], r))
        shares[rank].append(position)
        tokens[rank] += lengths[position]
    return [sorted(share) for share in shares]


def eval_batches(
    examples: list[Example], batch_size: int, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[list[Example], bool]]:
    """This rank's eval batches as ``(batch, counts)``; every rank yields the same number.

    A rank whose share ran out gets a stand-in batch with ``counts=False``: it must still run
    the forward pass (sharded models gather weights collectively) but its loss is ignored.
    """
    share = examples[rank::world_size]
    rounds = math.ceil(math.ceil(len(examples) / world_size) / batch_size)
    for index in range(rounds):
        mine = share[index * batch_size : (index + 1) * batch_size]
        yield (mine, True) if mine else (examples[:1], False)
