"""The reference model of DPO and KTO without a second copy where possible.

- Adapter methods: the policy itself with its adapters switched off (PEFT ``disable_adapter``).
- Full fine-tunes: a frozen copy of the model as it was before training.
- ``precompute_reference``: one pass before training stores each example's reference log-probs
  (both rows it puts in a batch: chosen and rejected, or KTO's completion and KL sequence) on
  the example (and in the run directory, so a resumed run reads them back); no reference
  model is kept in memory.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch

from kubetune.errors import DataError
from kubetune.trainer.distributed import unwrap_model
from kubetune.trainer.objectives.base import PrepareContext
from kubetune.trainer.objectives.preference import REFERENCE_KEY, SequenceLogps, sequence_logps

#: Host tensors of a batch of examples without packing (an objective's ``collate``).
Collate = Callable[[list, int, bool], dict[str, Any]]

#: Gives the reference's summed log-probs per sequence of a pair batch, given the policy model.
ReferenceLogps = Callable[[torch.nn.Module, dict[str, Any]], torch.Tensor]


def adapters_off(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The reference log-probs from the policy's own base weights (adapters disabled)."""
    peft_model = unwrap_model(model)
    with torch.no_grad(), peft_model.disable_adapter():
        return sequence_logps(peft_model, batch).summed


class FrozenCopy:
    """The reference log-probs from a frozen copy of the model taken before training."""

    def __init__(self, model: torch.nn.Module):
        self.model = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Forward ``batch`` through the frozen copy (``model``, the policy, is not used)."""
        with torch.no_grad():
            return sequence_logps(self.model, batch).summed


def precomputed(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The reference log-probs stored on the pairs before training (see :func:`precompute`)."""
    return batch[REFERENCE_KEY]


def precompute(model: torch.nn.Module, context: PrepareContext, collate: Collate) -> None:
    """Store each example's reference log-probs on it, from the model before any step;
    ``collate`` makes the objective's batches (two rows per example).

    Reads ``context.cache_file`` when a previous attempt of this run wrote it (and
    ``context.reuse_cache``: ``resume: auto``), else
    computes them with one no-grad pass (adapters switched off) and writes the file (rank 0).

    Raises:
        DataError: the cache file holds another number of pairs than the dataset.
    """
    pairs = context.examples
    cache = context.cache_file
    if cache is not None and context.reuse_cache and cache.is_file():
        values = torch.load(cache, map_location="cpu")
        if values.shape != (len(pairs), 2):
            raise DataError(f"{cache}: reference log-probs of {values.shape[0]} pairs; the dataset has {len(pairs)}")
    else:
        was_training = model.training
        model.eval()
        rows = []
        base_weights = contextlib.nullcontext() if context.full_finetune else model.disable_adapter()
        with torch.no_grad(), context.autocast(), base_weights:
            for start in range(0, len(pairs), context.batch_size):
                chunk = pairs[start : start + context.batch_size]
                batch = collate(chunk, context.pad_token_id, False)
                batch = {k: v.to(context.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                chosen, rejected = SequenceLogps.split(sequence_logps(model, batch).summed.float().cpu())
                rows.append(torch.stack([chosen, rejected], dim=1))
        model.train(was_training)
        values = torch.cat(rows)
        if cache is not None and context.is_main:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save(values, tmp)
            tmp.replace(cache)
    for pair, (chosen, rejected) in zip(pairs, values.tolist(), strict=True):
        pair.reference_logps = (chosen, rejected)


def build_reference(
    model: torch.nn.Module, context: PrepareContext, precompute_first: bool, collate: Collate
) -> ReferenceLogps:
    """The reference of a DPO or KTO run (see the module doc for which one)."""
    if precompute_first:
        precompute(model, context, collate)
        return precomputed
    if context.full_finetune:
        return FrozenCopy(model)
    return adapters_off
