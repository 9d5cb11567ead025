"""``objective: sft``: next-token cross-entropy on the target tokens (or class cross-entropy)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kubetune.trainer.data.batching import TAG_LABELS, collate
from kubetune.trainer.data.formats import IGNORE_INDEX
from kubetune.trainer.data.packing import collate_packed
from kubetune.trainer.kernels.chunked_cross_entropy import linear_cross_entropy_sum
from kubetune.trainer.objectives.base import Objective, ObjectiveLoss, register_objective


def loss_sum(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], chunked_loss: bool = False
) -> tuple[torch.Tensor, int]:
    """Summed loss over the batch's targets, and how many targets there were.

    Every batch entry except ``labels`` goes to the model (``attention_mask`` for padded
    batches; ``position_ids`` and sequence boundaries for packed ones).

    Language modelling: next-token cross-entropy over every labelled token. Prompt tuning
    prepends virtual tokens to the logits; only the positions of the real tokens are scored.
    ``chunked_loss`` runs the decoder alone and fuses the LM head with the loss, never holding
    full fp32 logits. Classification (1-D ``labels``): cross-entropy of each row's class. Token
    classification (``tag_labels``): cross-entropy of each tagged position's class, unshifted.
    """
    if TAG_LABELS in batch:
        tags = batch[TAG_LABELS]
        logits = model(**{k: v for k, v in batch.items() if k != TAG_LABELS}).logits
        total = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), tags.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return total, int((tags != IGNORE_INDEX).sum())
    labels = batch["labels"]
    inputs = model_inputs(batch)
    if labels.ndim == 1:
        logits = model(**inputs).logits
        return F.cross_entropy(logits.float(), labels, reduction="sum"), labels.numel()
    if chunked_loss:
        shifted = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        hidden = model.get_decoder()(**inputs).last_hidden_state
        total = linear_cross_entropy_sum(hidden, model.get_output_embeddings().weight, shifted)
        return total, int((shifted != IGNORE_INDEX).sum())
    logits = model(**inputs).logits
    logits = logits[:, -labels.size(1) :, :]
    labels = labels[:, 1:]
    logits = logits[:, :-1, :]
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return total, int((labels != IGNORE_INDEX).sum())


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The entries of a collated batch that go to the model's forward (all but the targets)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if "position_ids" in inputs:
        # A KV cache makes transformers skip the per-example mask it derives from position_ids.
        inputs["use_cache"] = False
    return inputs


@register_objective
class SftObjective(Objective):
    """Today's fine-tuning loss: the mean cross-entropy per target token of the step."""

    name = "sft"

    def __init__(self, config: Any = None):
        """SFT has no settings (``config``: its typed config, unused)."""

    def collate(self, examples: list, pad_token_id: int, packing: bool) -> dict[str, Any]:
        """A padded batch, or one packed row when ``packing``."""
        return collate_packed(examples) if packing else collate(examples, pad_token_id)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], chunked_loss: bool = False) -> ObjectiveLoss:
        """Cross-entropy summed over the target tokens (see :func:`loss_sum`)."""
        summed, targets = loss_sum(model, batch, chunked_loss)
        return ObjectiveLoss(summed, targets)
