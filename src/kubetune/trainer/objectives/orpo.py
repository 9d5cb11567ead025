"""``objective: orpo``: ORPO, the SFT loss on the chosen response plus an odds-ratio term.

Per pair: ``-mean log pi(chosen) - lambda log sigmoid(log odds(chosen) - log odds(rejected))``
with ``odds(y) = p / (1 - p)`` of the length-normalised probability ``p``; the rewards are
``lambda`` times each response's mean log-prob.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kubetune.spec.trainer import OrpoObjective
from kubetune.trainer.objectives.base import register_objective
from kubetune.trainer.objectives.preference import PairwiseObjective, SequenceLogps


@register_objective
class Orpo(PairwiseObjective):
    """ORPO's loss (see the module doc)."""

    name = "orpo"

    def __init__(self, config: OrpoObjective):
        self.weight = config.orpo.lambda_

    def pair_losses(
        self, model: torch.nn.Module, batch: dict[str, Any], policy: SequenceLogps
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ORPO losses of the pairs, and the rewards."""
        chosen, rejected = SequenceLogps.split(policy.mean)
        log_odds = (chosen - rejected) - (torch.log1p(-torch.exp(chosen)) - torch.log1p(-torch.exp(rejected)))
        losses = -chosen - self.weight * F.logsigmoid(log_odds)
        return losses, self.weight * chosen.detach(), self.weight * rejected.detach()
