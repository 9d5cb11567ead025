"""The data stream of ``objective: grpo``: prompts in, scored completions out.

:class:`RolloutStream` takes this rank's prompt micro-batches from a
:class:`~kubetune.trainer.loop.MicroBatchStream` (so each rank samples for its own share of the
prompts) and, once per round, samples ``num_generations`` completions of every prompt of the
next ``steps_per_generation`` optimizer steps with the generation engine, scores them with the
reward functions, and computes the group advantages (and the sampling-time and reference
log-probs the loss needs). It then yields micro-batches of
:class:`~kubetune.trainer.objectives.grpo.Completion` objects, one per prompt micro-batch, to
the unchanged training loop.

Its :attr:`~RolloutStream.position` is the data position of the next micro-batch to train
on, so a checkpoint resumes with the prompts not yet trained on. With ``steps_per_generation: 1``
a step boundary is always a round boundary: a resumed run samples exactly what the
uninterrupted one would have (same prompts, same RNG state). With more steps per round, a
resume within a round samples the rest of that round's prompts again, with the weights of then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import torch

from kubetune.trainer.data.prompts import PromptExample
from kubetune.trainer.evaluation.generation import stop_token_ids
from kubetune.trainer.generation import ENGINES, GenerationEngine
from kubetune.trainer.loop import DataPosition, MicroBatchStream
from kubetune.trainer.objectives.grpo import Completion, Grpo, completion_logps, group_advantages

#: Per-step values the rollout reports (means over the step's completions or groups, all ranks).
REWARD = "reward"
REWARD_STD = "reward_std"
COMPLETION_LENGTH = "completion_length"
GENERATION_S = "generation_s"
TRAINING_S = "training_s"


@dataclass
class _Scored:
    """One micro-batch of scored completions, where its prompts were in the data, and its sums."""

    position: DataPosition
    completions: list[Completion]
    sums: dict[str, float] = field(default_factory=dict)


class RolloutStream:
    """Scored completions for the training loop (see the module doc).

    Args:
        prompts: this rank's stream of prompt micro-batches.
        objective: the GRPO objective (settings, reward functions, reference).
        engine: samples the completions.
        model: the policy (not wrapped for DDP), for the sampling-time and reference log-probs.
        decode: token ids to text (the tokenizer's ``batch_decode`` without special tokens).
        micro_batches_per_step: ``gradient_accumulation_steps``.
        device: where the model runs.
        autocast: the loop's autocast context.
    """

    def __init__(
        self,
        prompts: MicroBatchStream,
        objective: Grpo,
        engine: GenerationEngine,
        model: torch.nn.Module,
        decode: Callable[[list[list[int]]], list[str]],
        micro_batches_per_step: int,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ):
        self.prompts = prompts
        self.objective = objective
        self.config = objective.config
        self.engine = engine
        self.model = model
        self.decode = decode
        self.per_round = micro_batches_per_step * self.config.steps_per_generation
        self.device = device
        self.autocast = autocast
        self.pending: deque[_Scored] = deque()
        self._step_sums: dict[str, float] = {}
        self._generation_s = 0.0

    @property
    def position(self) -> DataPosition:
        """The data position of the next micro-batch to train on."""
        return self.pending[0].position if self.pending else self.prompts.position

    @position.setter
    def position(self, value: DataPosition) -> None:
        self.pending.clear()
        self.prompts.position = value

    def __iter__(self) -> Iterator[list[Completion]]:
        source = iter(self.prompts)
        while True:
            if not self.pending:
                self._round(source)
            scored = self.pending.popleft()
            for name, value in scored.sums.items():
                self._step_sums[name] = self._step_sums.get(name, 0.0) + value
            yield scored.completions

    def _round(self, source: Iterator[list[PromptExample]]) -> None:
        started = time.perf_counter()
        self.engine.sync_weights()
        drawn = []
        for _ in range(self.per_round):
            before = dataclasses.replace(self.prompts.position)
            drawn.append((before, next(source)))
        for before, prompts in drawn:
            self.pending.append(self._score(before, prompts))
        self._generation_s += time.perf_counter() - started

    def _score(self, position: DataPosition, prompts: list[PromptExample]) -> _Scored:
        config, rewards = self.config, self.objective.rewards
        group = config.num_generations
        sampled = self.engine.generate([prompt.prompt_ids for prompt in prompts])
        texts = self.decode(sampled)
        scores = torch.zeros(len(prompts), group, len(rewards), dtype=torch.float64)
        for index, prompt in enumerate(prompts):
            for column, reward in enumerate(rewards):
                values = reward(prompt.row, texts[index * group : (index + 1) * group], prompt.where)
                scores[index, :, column] = torch.tensor(values, dtype=torch.float64)
        weights = torch.tensor([reward.weight for reward in rewards], dtype=torch.float64)
        total = (scores * weights).sum(dim=-1)
        advantages = group_advantages(total, scale=config.loss_type != "dr_grpo")
        completions = [
            Completion(
                prompts[index // group].prompt_ids,
                ids,
                float(advantages.view(-1)[index]),
                len(ids) if config.loss_type == "dapo" else 1,
            )
            for index, ids in enumerate(sampled)
        ]
        self._add_logps(completions)
        sums = {
            "completions": float(len(sampled)),
            "groups": float(len(prompts)),
            REWARD: float(total.sum()),
            REWARD_STD: float(total.std(dim=1).sum()),
            COMPLETION_LENGTH: float(sum(len(ids) for ids in sampled)),
        }
        for column, reward in enumerate(rewards):
            sums[f"{REWARD}/{reward.name}"] = float(scores[:, :, column].sum())
        return _Scored(position, completions, sums)

    def _add_logps(self, completions: list[Completion]) -> None:
        """The sampling-time log-probs (rounds feeding several steps) and the reference's (``beta > 0``)."""
        off_policy = self.config.steps_per_generation > 1
        if not off_policy and self.config.beta == 0:
            return
        host = self.objective.collate(completions, self.objective.pad_token_id, packing=False)
        batch = {key: value.to(self.device) for key, value in host.items()}
        with torch.no_grad(), self.autocast():
            old = completion_logps(self.model, batch, self.config.temperature) if off_policy else None
            ref = self.objective.reference_logps(self.model, batch) if self.config.beta != 0 else None
        for row, completion in enumerate(completions):
            length = len(completion.completion_ids)
            if old is not None:
                completion.old_logps = old[row, :length].float().tolist()
            if ref is not None:
                completion.ref_logps = ref[row, :length].float().tolist()

    def step_metrics(self, seconds: float) -> dict[str, float]:
        """The rollout's values of the step that just ended (and took ``seconds``): mean reward
        (total and per function), mean within-group reward std, mean completion length (all
        ranks), and this rank's generation and training seconds."""
        names = sorted(self._step_sums)
        sums = torch.tensor([self._step_sums[name] for name in names], dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            sums = sums.to(self.device)
            torch.distributed.all_reduce(sums)
        totals = dict(zip(names, sums.tolist(), strict=True))
        self._step_sums = {}
        generation, self._generation_s = self._generation_s, 0.0
        values = {GENERATION_S: round(generation, 3), TRAINING_S: round(max(0.0, seconds - generation), 3)}
        if totals:
            completions, groups = totals.pop("completions"), totals.pop("groups")
            for name, total in totals.items():
                values[name] = total / (groups if name == REWARD_STD else completions)
        return values


def build_rollout(
    prompts: MicroBatchStream,
    objective: Grpo,
    model: torch.nn.Module,
    tokenizer,
    micro_batches_per_step: int,
    device: torch.device,
    bf16: bool,
) -> RolloutStream:
    """The rollout stream of a GRPO run, sampling with the engine ``grpo.engine`` names."""
    autocast = partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=bf16)
    config = objective.config
    stop_ids = stop_token_ids(model, tokenizer)
    engine = ENGINES[config.engine](model, config, tokenizer.pad_token_id, stop_ids, device, autocast)
    return RolloutStream(
        prompts,
        objective,
        engine,
        model,
        partial(tokenizer.batch_decode, skip_special_tokens=True),
        micro_batches_per_step,
        device,
        autocast,
    )
