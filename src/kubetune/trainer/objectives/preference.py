"""What the pairwise preference objectives share: both responses of every pair in one forward,
and each response's log-probability under the model.

A micro-batch of ``n`` pairs becomes one batch of ``2n`` sequences, the chosen responses first
(rows ``0..n-1``) and the rejected ones after (rows ``n..2n-1``): padded to the longest, or, with
packing, concatenated into one padding-free row with per-sequence attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from kubetune.trainer.data.batching import collate
from kubetune.trainer.data.formats import IGNORE_INDEX
from kubetune.trainer.data.packing import collate_packed
from kubetune.trainer.data.preference import PreferenceExample
from kubetune.trainer.objectives.base import Objective, ObjectiveLoss
from kubetune.trainer.objectives.sft import model_inputs

#: Batch entries that describe the pairs rather than go to the model.
PAIRS_KEY = "num_pairs"
REFERENCE_KEY = "reference_logps"
DESIRABLE_KEY = "desirable"
_INFO_KEYS = (PAIRS_KEY, REFERENCE_KEY, DESIRABLE_KEY)

#: The per-step values the preference objectives report (means over the step's pairs).
CHOSEN_REWARD = "chosen_reward"
REJECTED_REWARD = "rejected_reward"
REWARD_MARGIN = "reward_margin"
REWARD_ACCURACY = "reward_accuracy"


@dataclass
class SequenceLogps:
    """Per-sequence log-probabilities of the response tokens of a ``2n``-row pair batch.

    Attributes:
        summed: sum of the target tokens' log-probs per sequence, shape ``(2n,)``.
        tokens: target tokens per sequence, shape ``(2n,)``.
    """

    summed: torch.Tensor
    tokens: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """Length-normalised log-probs (mean per target token)."""
        return self.summed / self.tokens.clamp(min=1)

    @staticmethod
    def split(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(chosen, rejected)`` halves of a per-sequence tensor."""
        half = values.size(0) // 2
        return values[:half], values[half:]


def collate_pairs(pairs: list[PreferenceExample], pad_token_id: int, packing: bool) -> dict[str, Any]:
    """One batch holding the chosen then the rejected response of every pair (see module doc).

    Adds ``num_pairs`` and, when every pair has them, the precomputed ``reference_logps``
    (shape ``(2n,)``, same order as the rows).
    """
    return collate_halves(
        pairs, [pair.chosen for pair in pairs], [pair.rejected for pair in pairs], pad_token_id, packing
    )


def collate_halves(items: list, first: list, second: list, pad_token_id: int, packing: bool) -> dict[str, Any]:
    """One batch of the ``first`` sequences of ``items`` then their ``second`` ones, with
    ``num_pairs`` and, when every item has them, the items' precomputed ``reference_logps``
    (a ``(first, second)`` pair per item) as one ``(2n,)`` tensor in row order."""
    sequences = first + second
    batch: dict[str, Any] = collate_packed(sequences) if packing else collate(sequences, pad_token_id)
    batch[PAIRS_KEY] = len(items)
    if all(item.reference_logps is not None for item in items):
        firsts = [item.reference_logps[0] for item in items]
        seconds = [item.reference_logps[1] for item in items]
        batch[REFERENCE_KEY] = torch.tensor(firsts + seconds, dtype=torch.float32)
    return batch


def sequence_logps(model: torch.nn.Module, batch: dict[str, Any]) -> SequenceLogps:
    """Forward ``batch`` through ``model``; the log-probs of each sequence's target tokens."""
    labels = batch["labels"]
    inputs = model_inputs({k: v for k, v in batch.items() if k not in _INFO_KEYS})
    logits = model(**inputs).logits
    logits = logits[:, -labels.size(1) :, :][:, :-1, :]  # prompt tuning prepends virtual tokens
    targets = labels[:, 1:]
    token_logps = -F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view_as(targets)
    scored = (targets != IGNORE_INDEX).to(token_logps.dtype)
    if "cu_seq_lens_q" not in batch:
        return SequenceLogps(token_logps.sum(dim=1), scored.sum(dim=1))
    bounds = batch["cu_seq_lens_q"].long()
    lengths = bounds[1:] - bounds[:-1]
    owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)[1:]
    summed = torch.zeros(lengths.numel(), dtype=token_logps.dtype, device=token_logps.device)
    tokens = torch.zeros_like(summed)
    return SequenceLogps(summed.index_add(0, owner, token_logps[0]), tokens.index_add(0, owner, scored[0]))


def reward_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """Sums over the pairs of the rewards, their margin and whether chosen won."""
    chosen, rejected = chosen_rewards.detach().float(), rejected_rewards.detach().float()
    return {
        CHOSEN_REWARD: float(chosen.sum()),
        REJECTED_REWARD: float(rejected.sum()),
        REWARD_MARGIN: float((chosen - rejected).sum()),
        REWARD_ACCURACY: float((chosen > rejected).float().sum()),
    }


class PairwiseObjective(Objective):
    """Base of the objectives trained on preference pairs: one pair is one unit of the loss."""

    def collate(self, examples: list, pad_token_id: int, packing: bool) -> dict[str, Any]:
        """Both responses of every pair in one batch (see :func:`collate_pairs`)."""
        return collate_pairs(examples, pad_token_id, packing)

    def pair_losses(
        self, model: torch.nn.Module, batch: dict[str, Any], policy: SequenceLogps
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-pair losses and the chosen and rejected rewards, from the policy's log-probs."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], chunked_loss: bool = False) -> ObjectiveLoss:
        """The pair losses summed, with the reward metrics."""
        policy = sequence_logps(model, batch)
        losses, chosen_rewards, rejected_rewards = self.pair_losses(model, batch, policy)
        return ObjectiveLoss(losses.sum(), int(batch[PAIRS_KEY]), reward_metrics(chosen_rewards, rejected_rewards))
