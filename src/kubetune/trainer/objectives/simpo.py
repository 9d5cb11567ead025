"""``objective: simpo``: SimPO, reference-free.

``-log sigmoid(beta (mean log pi(chosen) - mean log pi(rejected)) - gamma)`` with length-
normalised log-probs; the rewards are ``beta`` times each response's mean log-prob.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kubetune.spec.trainer import SimpoObjective
from kubetune.trainer.objectives.base import register_objective
from kubetune.trainer.objectives.preference import PairwiseObjective, SequenceLogps


@register_objective
class Simpo(PairwiseObjective):
    """SimPO's pairwise loss (see the module doc)."""

    name = "simpo"

    def __init__(self, config: SimpoObjective):
        self.config = config.simpo

    def pair_losses(
        self, model: torch.nn.Module, batch: dict[str, Any], policy: SequenceLogps
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SimPO losses of the pairs, and the rewards."""
        chosen, rejected = SequenceLogps.split(policy.mean)
        beta = self.config.beta
        losses = -F.logsigmoid(beta * (chosen - rejected) - self.config.gamma)
        return losses, beta * chosen.detach(), beta * rejected.detach()
