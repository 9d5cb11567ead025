"""``objective: dpo``: Direct Preference Optimization against a reference model.

With ``h = (log pi(chosen) - log pi(rejected)) - (log ref(chosen) - log ref(rejected))``:
``sigmoid``: ``-(1-s) log sigmoid(beta h) - s log sigmoid(-beta h)`` (``s``: label smoothing);
``ipo``: ``(h - 1/(2 beta))^2`` on length-normalised log-probs; ``hinge``: ``relu(1 - beta h)``.
The implicit rewards are ``beta (log pi - log ref)`` of each response.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kubetune.spec.trainer import DpoConfig, DpoObjective
from kubetune.trainer.objectives.base import PrepareContext, register_objective
from kubetune.trainer.objectives.preference import PairwiseObjective, SequenceLogps
from kubetune.trainer.objectives.reference import ReferenceLogps, build_reference


def dpo_losses(
    config: DpoConfig,
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses and the chosen and rejected rewards, from per-sequence log-probs."""
    h = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    if config.loss_type == "sigmoid":
        smoothing = config.label_smoothing
        losses = -F.logsigmoid(config.beta * h) * (1 - smoothing) - F.logsigmoid(-config.beta * h) * smoothing
    elif config.loss_type == "ipo":
        losses = (h - 1 / (2 * config.beta)) ** 2
    else:
        losses = torch.relu(1 - config.beta * h)
    chosen_rewards = config.beta * (policy_chosen - reference_chosen).detach()
    rejected_rewards = config.beta * (policy_rejected - reference_rejected).detach()
    return losses, chosen_rewards, rejected_rewards


@register_objective
class Dpo(PairwiseObjective):
    """DPO with the reference of :func:`~kubetune.trainer.objectives.reference.build_reference`."""

    name = "dpo"

    def __init__(self, config: DpoObjective):
        self.config = config.dpo
        self.reference: ReferenceLogps | None = None

    def prepare(self, model: torch.nn.Module, context: PrepareContext) -> None:
        """Pick the reference (adapters off, frozen copy, or precomputed log-probs)."""
        self.reference = build_reference(model, context, self.config.precompute_reference, self.collate)

    def pair_losses(
        self, model: torch.nn.Module, batch: dict[str, Any], policy: SequenceLogps
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DPO losses of the pairs (see the module doc)."""
        assert self.reference is not None, "Dpo.prepare() sets the reference before the first loss"
        reference = self.reference(model, batch).to(policy.summed.dtype)
        if self.config.loss_type == "ipo":  # IPO compares length-normalised log-probs
            scale = policy.tokens.clamp(min=1)
            policy_logps, reference = policy.mean, reference / scale
        else:
            policy_logps = policy.summed
        chosen, rejected = SequenceLogps.split(policy_logps)
        reference_chosen, reference_rejected = SequenceLogps.split(reference)
        return dpo_losses(self.config, chosen, rejected, reference_chosen, reference_rejected)
