"""``objective: reward``: a Bradley-Terry reward model on a sequence-classification head.

The model (``model.task: sequence-classification``) gives each sequence one score ``r``; per
pair the loss is ``-log sigmoid(r(chosen) - r(rejected))``. The rewards reported are the
scores themselves. The export is a plain ``AutoModelForSequenceClassification`` with one label.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kubetune.spec.trainer import RewardObjective
from kubetune.trainer.objectives.base import ObjectiveLoss, register_objective
from kubetune.trainer.objectives.preference import PAIRS_KEY, PairwiseObjective, SequenceLogps, reward_metrics


@register_objective
class Reward(PairwiseObjective):
    """Pairwise reward-model training (see the module doc)."""

    name = "reward"
    head_labels = ("reward",)

    def __init__(self, config: RewardObjective):
        self.config = config

    def collate(self, examples: list, pad_token_id: int, packing: bool) -> dict[str, Any]:
        """Both responses of every pair in one padded batch (sequence classifiers are not packed)."""
        return super().collate(examples, pad_token_id, packing=False)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], chunked_loss: bool = False) -> ObjectiveLoss:
        """The Bradley-Terry loss summed over the pairs, with the reward metrics."""
        scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()
        chosen, rejected = SequenceLogps.split(scores)
        losses = -F.logsigmoid(chosen - rejected)
        return ObjectiveLoss(losses.sum(), int(batch[PAIRS_KEY]), reward_metrics(chosen, rejected))
