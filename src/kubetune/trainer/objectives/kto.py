"""``objective: kto``: Kahneman-Tversky Optimization on unpaired desirable/undesirable rows.

As TRL's ``KTOTrainer`` (``loss_type: kto``), per row with ``r = log pi(y|x) - log ref(y|x)``
(summed log-probs of the completion):

- the KL reference point ``z = max(0, mean over the micro-batch of (log pi(y'|x) - log
  ref(y'|x)))``, where ``y'`` is the mismatched completion of the row's KL sequence
  (:func:`~kubetune.trainer.data.kto.pair_mismatched`), detached (no gradient); with several
  processes the mean is over the current micro-batch of every process, as TRL gathers it
  (so N processes x b rows per micro-batch equal one process x N b rows);
- desirable rows: ``desirable_weight * (1 - sigmoid(beta (r - z)))``;
  undesirable rows: ``undesirable_weight * (1 - sigmoid(beta (z - r)))``;
- the loss is the mean over the rows of the step; the rewards are ``beta r``, reported as the
  mean over the desirable rows (``chosen_reward``) and over the undesirable ones
  (``rejected_reward``), with ``kl``, the mean reference point.

With gradient accumulation ``z`` is estimated per micro-batch, as TRL does. Completion and KL
sequences of a micro-batch go through the model in one forward (rows ``0..n-1`` and
``n..2n-1``; packed into one row with packing), the reference's likewise.
"""

from __future__ import annotations

from typing import Any

import torch

from kubetune.spec.trainer import KtoObjective
from kubetune.trainer.data.kto import KtoExample
from kubetune.trainer.objectives.base import Objective, ObjectiveLoss, PrepareContext, register_objective
from kubetune.trainer.objectives.preference import (
    CHOSEN_REWARD,
    DESIRABLE_KEY,
    PAIRS_KEY,
    REJECTED_REWARD,
    SequenceLogps,
    collate_halves,
    sequence_logps,
)
from kubetune.trainer.objectives.reference import ReferenceLogps, build_reference

#: The mean KL reference point of the step's micro-batches.
KL_VALUE = "kl"


def kl_reference_point(policy_kl: torch.Tensor, reference_kl: torch.Tensor) -> torch.Tensor:
    """``z``: the mean of ``log pi(y'|x) - log ref(y'|x)`` over the KL sequences of this
    micro-batch on every process (TRL gathers the per-device estimates likewise), at least 0,
    without gradient."""
    sums = torch.stack([(policy_kl - reference_kl).detach().double().sum(), policy_kl.new_tensor(policy_kl.numel())])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(sums)
    return (sums[0] / sums[1]).clamp(min=0).to(policy_kl.dtype)


def kto_losses(
    beta: float,
    desirable_weight: float,
    undesirable_weight: float,
    policy: torch.Tensor,
    reference: torch.Tensor,
    kl: torch.Tensor,
    desirable: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row KTO losses and the rewards ``beta r``, from the summed log-probs of the rows'
    completions and the KL reference point ``kl`` (see the module doc)."""
    ratios = policy - reference
    desirable_losses = desirable_weight * (1 - torch.sigmoid(beta * (ratios - kl)))
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratios)))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)
    return losses, beta * ratios.detach()


@register_objective
class Kto(Objective):
    """KTO with the reference of :func:`~kubetune.trainer.objectives.reference.build_reference`."""

    name = "kto"

    def __init__(self, config: KtoObjective):
        self.config = config.kto
        self.reference: ReferenceLogps | None = None

    def collate(self, examples: list[KtoExample], pad_token_id: int, packing: bool) -> dict[str, Any]:
        """The rows' completions then their KL sequences in one batch, with the labels."""
        completions = [example.completion for example in examples]
        kl = [example.kl for example in examples]
        batch = collate_halves(examples, completions, kl, pad_token_id, packing)
        batch[DESIRABLE_KEY] = torch.tensor([example.desirable for example in examples], dtype=torch.bool)
        return batch

    def prepare(self, model: torch.nn.Module, context: PrepareContext) -> None:
        """Pick the reference (adapters off, frozen copy, or precomputed log-probs)."""
        self.reference = build_reference(model, context, self.config.precompute_reference, self.collate)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], chunked_loss: bool = False) -> ObjectiveLoss:
        """The KTO losses summed over the rows, with the rewards and the KL reference point."""
        assert self.reference is not None, "Kto.prepare() sets the reference before the first loss"
        policy = sequence_logps(model, batch).summed
        reference = self.reference(model, batch).to(policy.dtype)
        completion, kl_sequence = SequenceLogps.split(policy)
        reference_completion, reference_kl = SequenceLogps.split(reference)
        desirable = batch[DESIRABLE_KEY]
        config = self.config
        kl = kl_reference_point(kl_sequence, reference_kl)
        losses, rewards = kto_losses(
            config.beta,
            config.desirable_weight,
            config.undesirable_weight,
            completion,
            reference_completion,
            kl,
            desirable,
        )
        rows = int(batch[PAIRS_KEY])
        chosen = int(desirable.sum())
        metrics = {
            CHOSEN_REWARD: float(rewards[desirable].sum()),
            REJECTED_REWARD: float(rewards[~desirable].sum()),
            KL_VALUE: float(kl) * rows,
        }
        counts = {CHOSEN_REWARD: float(chosen), REJECTED_REWARD: float(rows - chosen)}
        return ObjectiveLoss(losses.sum(), rows, metrics, counts)
