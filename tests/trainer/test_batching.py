"""Batching: every rank gets the same number of micro-batches, and collation keeps targets aligned."""

from __future__ import annotations

import pytest

from kubetune.trainer.data.batching import (
    balanced_shares,
    collate,
    eval_batches,
    micro_batches,
    micro_batches_per_epoch,
)
from kubetune.trainer.data.formats import IGNORE_INDEX, Example


def _examples(n: int) -> list[Example]:
    return [Example([i + 1] * (1 + i % 3), [i + 1] * (1 + i % 3)) for i in range(n)]


@pytest.mark.parametrize(("n", "batch", "world"), [(9, 2, 2), (5, 2, 2), (7, 3, 3), (10, 4, 1), (1, 1, 2), (13, 2, 4)])
def test_every_rank_gets_the_same_number_of_micro_batches(n, batch, world):
    per_rank = [
        list(micro_batches(_examples(n), batch, epoch=0, seed=1, rank=r, world_size=world)) for r in range(world)
    ]
    counts = {len(batches) for batches in per_rank}
    assert counts == {micro_batches_per_epoch(n, batch, world)}
    assert all(len(mb) >= 1 for batches in per_rank for mb in batches)
    seen = [ex.input_ids[0] for batches in per_rank for mb in batches for ex in mb]
    assert len(seen) == len(set(seen)), "an example was given to two ranks"
    assert n - len(seen) < world, "more than world_size - 1 examples were skipped"


def test_ranks_together_see_what_one_process_sees_per_global_batch():
    examples = _examples(12)
    single = list(micro_batches(examples, 4, epoch=3, seed=7))
    split = [list(micro_batches(examples, 2, epoch=3, seed=7, rank=r, world_size=2)) for r in range(2)]
    for index, whole in enumerate(single):
        together = split[0][index] + split[1][index]
        assert sorted(ex.input_ids[0] for ex in together) == sorted(ex.input_ids[0] for ex in whole)


def test_ranks_of_a_variable_length_batch_get_even_token_totals():
    # Lognormal-like lengths: dealt round-robin, one rank would wait for the other in every step.
    lengths = [1800, 40, 35, 900, 60, 1200, 30, 25, 700, 50, 20, 640, 45, 1500, 15, 80]
    shares = balanced_shares(lengths, 2)
    assert sorted(shares[0] + shares[1]) == list(range(16))
    assert [len(s) for s in shares] == [8, 8], "every rank keeps batch_size examples (memory plan)"
    totals = [sum(lengths[i] for i in s) for s in shares]
    assert abs(totals[0] - totals[1]) <= 0.02 * sum(totals)
    round_robin = [sum(lengths[r::2]) for r in range(2)]
    assert abs(round_robin[0] - round_robin[1]) > 10 * abs(totals[0] - totals[1])
    assert [len(s) for s in balanced_shares(lengths[:5], 2)] == [3, 2]
    assert balanced_shares(lengths, 1) == [list(range(16))]


def test_eval_batches_cover_every_example_once_with_equal_rounds():
    examples = _examples(5)
    rounds = [list(eval_batches(examples, 2, rank=r, world_size=3)) for r in range(3)]
    assert len({len(r) for r in rounds}) == 1
    counted = [ex.input_ids[0] for r in rounds for batch, counts in r if counts for ex in batch]
    assert sorted(counted) == [ex.input_ids[0] for ex in examples]


def test_collate_pads_and_masks_padding_out_of_the_loss():
    batch = collate([Example([5, 6, 7], [IGNORE_INDEX, 6, 7]), Example([8], [8])], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_collate_gives_one_class_per_row_for_classification():
    batch = collate([Example([5, 6], [], class_label=1), Example([7], [], class_label=0)], pad_token_id=0)
    assert batch["labels"].tolist() == [1, 0]
    assert batch["input_ids"].tolist() == [[5, 6], [7, 0]]
