"""``objective: grpo``: Group Relative Policy Optimization on sampled completions.

Each prompt gets a group of ``G`` completions sampled from the policy (the rollout,
:mod:`kubetune.trainer.rollout`); reward functions score them, and each completion's advantage
is its reward minus its group's mean, divided by the group's standard deviation (+1e-4; not
divided for ``dr_grpo``). Per completion token ``t`` with the policy's log-prob ``l_t``
(logits divided by the sampling temperature), the log-prob at sampling time ``o_t`` and the
reference's ``r_t``::

    ratio_t = exp(l_t - o_t)
    loss_t  = -min(ratio_t A, clip(ratio_t, 1 - epsilon, 1 + epsilon) A) + beta KL_t
    KL_t    = exp(r_t - l_t) - (r_t - l_t) - 1

``o_t`` is the policy's own (detached) log-prob when the completions were sampled for this very
step (``steps_per_generation: 1``: the ratio is 1, only its gradient counts). The step's loss:
``grpo``: the mean over completions of each completion's mean token loss; ``dr_grpo``: the sum of
every token loss divided by (completions x ``max_new_tokens``); ``dapo``: the mean over every
completion token of the step. The reference is the model with its adapters switched off
(adapter methods) or a frozen copy of the initial weights (``method: full``), needed only when
``beta > 0``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from kubetune.spec.trainer import GrpoConfig, GrpoObjective
from kubetune.trainer.distributed import unwrap_model
from kubetune.trainer.objectives.base import Objective, ObjectiveLoss, PrepareContext, register_objective
from kubetune.trainer.rewards import load_rewards

#: Added to the group's standard deviation before dividing by it (as TRL does).
STD_EPSILON = 1e-4
#: The per-step values GRPO's loss reports (means per loss unit).
KL = "kl"
CLIP_RATIO = "clip_ratio"


@dataclass
class Completion:
    """One sampled completion of a prompt, scored, ready for the loss.

    Attributes:
        prompt_ids: the prompt's tokens.
        completion_ids: the sampled tokens (ending with EOS when the model stopped).
        advantage: its group-normalised reward.
        units: what it counts for in the step's mean (1, or its tokens for ``dapo``).
        old_logps: per-token log-probs at sampling time (None: the policy's own, detached).
        ref_logps: per-token log-probs under the reference (None when ``beta`` is 0).
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    advantage: float
    units: int
    old_logps: list[float] | None = None
    ref_logps: list[float] | None = None

    @property
    def input_ids(self) -> list[int]:
        """Prompt and completion: what goes through the model."""
        return self.prompt_ids + self.completion_ids

    @property
    def num_targets(self) -> int:
        """Its units in the step's loss (see :attr:`units`)."""
        return self.units


def group_advantages(rewards: torch.Tensor, scale: bool) -> torch.Tensor:
    """Advantages of ``rewards`` shaped ``(groups, G)``: minus the group mean, divided by the
    group's (unbiased) standard deviation + :data:`STD_EPSILON` when ``scale``."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + STD_EPSILON)


def token_losses(
    config: GrpoConfig,
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-token losses, whether each token's ratio was clipped, and the per-token KL (None when
    ``beta`` is 0); tensors shaped ``(completions, tokens)`` (see the module doc)."""
    old = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old)
    clipped = torch.clamp(ratio, 1 - config.epsilon, 1 + config.epsilon)
    advantage = advantages.unsqueeze(1)
    losses = -torch.min(ratio * advantage, clipped * advantage)
    was_clipped = ((ratio < 1 - config.epsilon) & (advantage < 0)) | ((ratio > 1 + config.epsilon) & (advantage > 0))
    kl = None
    if config.beta != 0:
        assert ref_logps is not None, "beta > 0 needs the reference log-probs"
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        losses = losses + config.beta * kl
    return losses, was_clipped, kl


def per_completion(values: torch.Tensor, mask: torch.Tensor, loss_type: str, max_new_tokens: int) -> torch.Tensor:
    """Each completion's share of the step's summed loss (the loop divides the sum by the step's
    units: completions, or completion tokens for ``dapo``)."""
    summed = (values * mask).sum(dim=1)
    if loss_type == "grpo":
        return summed / mask.sum(dim=1).clamp(min=1)
    if loss_type == "dr_grpo":
        return summed / max_new_tokens
    return summed  # dapo: a token is a unit


def completion_logps(model: torch.nn.Module, batch: dict[str, Any], temperature: float) -> torch.Tensor:
    """Per-token log-probs ``(completions, tokens)`` of the completions of a :meth:`Grpo.collate`
    batch under ``model``, at the sampling temperature."""
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    width = batch["completion_mask"].size(1)
    inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    peft_config = getattr(model, "active_peft_config", None)
    if not getattr(peft_config, "is_prompt_learning", False):
        # Prompts are left-padded: positions count real tokens only, as in generate.
        inputs["position_ids"] = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(**inputs).logits[:, -width - 1 : -1, :].float() / temperature
    targets = input_ids[:, -width:]
    token_logps = -F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return token_logps.view(targets.shape)


def _pad(rows: list[list], value: float | int, dtype: torch.dtype, left: bool = False) -> torch.Tensor:
    width = max(len(row) for row in rows)
    out = torch.full((len(rows), width), value, dtype=dtype)
    for index, row in enumerate(rows):
        if row:
            values = torch.tensor(row, dtype=dtype)
            if left:
                out[index, width - len(row) :] = values
            else:
                out[index, : len(row)] = values
    return out


@register_objective
class Grpo(Objective):
    """GRPO's loss on :class:`Completion` micro-batches (see the module doc)."""

    name = "grpo"
    #: Padded prompt/completion batches through the plain forward (generate recompiles under torch.compile).
    speed_overrides: ClassVar[dict[str, bool]] = {"packing": False, "chunked_loss": False, "compile": False}

    def __init__(self, config: GrpoObjective):
        self.config = config.grpo
        self.rewards = load_rewards(self.config.rewards)
        self.reference: torch.nn.Module | None = None
        self.full_finetune = False
        self.pad_token_id = 0

    def planned_batch(self, lengths: list[int]) -> list[int]:
        """A micro-batch of prompts of ``lengths`` trains on ``num_generations`` completions of up
        to ``max_new_tokens`` per prompt."""
        longest = self.config.max_new_tokens
        return [length + longest for length in lengths for _ in range(self.config.num_generations)]

    def data_stream(self, stream: Any, model: torch.nn.Module, tokenizer: Any, training: Any, device: torch.device):
        """The prompts become scored completions, sampled as training goes
        (:class:`~kubetune.trainer.rollout.RolloutStream`)."""
        from kubetune.trainer.rollout import build_rollout  # the rollout builds on this module

        accumulate, bf16 = training.gradient_accumulation_steps, training.precision == "bf16"
        return build_rollout(stream, self, model, tokenizer, accumulate, device, bf16)

    def prepare(self, model: torch.nn.Module, context: PrepareContext) -> None:
        """Check every prompt row has the columns the rewards read; keep a frozen reference copy
        for a full fine-tune with ``beta > 0`` (adapter methods switch their adapters off instead)."""
        for example in context.examples:
            for reward in self.rewards:
                reward.check_row(example.row, example.where)
        self.full_finetune = context.full_finetune
        self.pad_token_id = context.pad_token_id
        if self.config.beta != 0 and context.full_finetune:
            self.reference = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)

    def reference_logps(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Per-token log-probs of the batch's completions under the reference (no gradient)."""
        with torch.no_grad():
            if self.reference is not None:
                return completion_logps(self.reference, batch, self.config.temperature)
            with model.disable_adapter():
                return completion_logps(model, batch, self.config.temperature)

    def collate(self, examples: list, pad_token_id: int, packing: bool) -> dict[str, Any]:
        """``input_ids``/``attention_mask``: left-padded prompts then right-padded completions;
        ``completion_mask`` (the completion tokens), ``advantages`` and, when every completion
        has them, sampling-time and reference log-probs (``old_logps``, ``ref_logps``); never packed."""
        completions: list[Completion] = examples
        completion_mask = _pad([[1] * len(c.completion_ids) for c in completions], 0, torch.long)
        batch: dict[str, Any] = {
            "input_ids": torch.cat(
                [
                    _pad([c.prompt_ids for c in completions], pad_token_id, torch.long, left=True),
                    _pad([c.completion_ids for c in completions], pad_token_id, torch.long),
                ],
                dim=1,
            ),
            "attention_mask": torch.cat(
                [_pad([[1] * len(c.prompt_ids) for c in completions], 0, torch.long, left=True), completion_mask],
                dim=1,
            ),
            "completion_mask": completion_mask,
            "advantages": torch.tensor([c.advantage for c in completions], dtype=torch.float32),
        }
        for key in ("old_logps", "ref_logps"):
            rows = [getattr(c, key) for c in completions]
            if all(row is not None for row in rows):
                batch[key] = _pad(rows, 0.0, torch.float32)
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], chunked_loss: bool = False) -> ObjectiveLoss:
        """The batch's summed GRPO loss, its units and the KL and clip-ratio sums per unit."""
        logps = completion_logps(model, batch, self.config.temperature)
        mask = batch["completion_mask"].to(logps.dtype)
        losses, was_clipped, kl = token_losses(
            self.config, logps, batch.get("old_logps"), batch.get("ref_logps"), batch["advantages"].to(logps.dtype)
        )
        loss_type, longest = self.config.loss_type, self.config.max_new_tokens
        dapo = loss_type == "dapo"
        units = int(mask.sum()) if dapo else mask.size(0)

        def unit_sum(values: torch.Tensor) -> float:  # summed like the loss's units: tokens or completions
            per_unit = per_completion(values.detach().to(mask.dtype), mask, "dapo" if dapo else "grpo", longest)
            return float(per_unit.sum())

        metrics = {CLIP_RATIO: unit_sum(was_clipped)}
        if kl is not None:
            metrics[KL] = unit_sum(kl)
        return ObjectiveLoss(per_completion(losses, mask, loss_type, longest).sum(), units, metrics)
