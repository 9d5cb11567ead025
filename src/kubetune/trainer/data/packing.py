"""Padding-free packing: a micro-batch's examples concatenated into one row.

The packed row carries ``position_ids`` that restart at 0 for every example and the
cumulative sequence lengths (``cu_seq_lens_*``) that varlen attention kernels use to keep
examples from attending to each other. The first token of every example gets the ignore
label, so the token before it (the previous example's last token) is not trained to predict
it: the summed loss and the number of targets equal those of the padded batch exactly.
"""

from __future__ import annotations

import torch

from kubetune.trainer.data.formats import IGNORE_INDEX, Example


def collate_packed(examples: list[Example]) -> dict[str, torch.Tensor | int]:
    """Concatenate ``examples`` into a single row of shape ``(1, total_tokens)``, with no padding.

    Returns ``input_ids``, ``labels``, ``position_ids``, ``cu_seq_lens_q``/``cu_seq_lens_k``
    (int32, ``len(examples) + 1`` boundaries) and ``max_length_q``/``max_length_k`` (ints).
    There is no ``attention_mask``: transformers then derives per-example attention from
    ``position_ids`` (SDPA/eager), and the packed attention kernel reads the boundaries.
    """
    if not examples:
        raise ValueError("collate_packed needs at least one example")
    lengths = [len(ex.input_ids) for ex in examples]
    input_ids = torch.tensor([tok for ex in examples for tok in ex.input_ids], dtype=torch.long)
    labels = torch.tensor([lab for ex in examples for lab in ex.labels], dtype=torch.long)
    position_ids = torch.cat([torch.arange(n, dtype=torch.long) for n in lengths])
    cu_seq_lens = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu_seq_lens[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    labels[cu_seq_lens[:-1].long()] = IGNORE_INDEX
    longest = max(lengths)
    return {
        "input_ids": input_ids[None],
        "labels": labels[None],
        "position_ids": position_ids[None],
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": longest,
        "max_length_k": longest,
    }
