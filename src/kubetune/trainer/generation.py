"""Sampling completions inside the training loop (``objective: grpo``), behind one interface.

:class:`GenerationEngine` is what the rollout asks for: ``num_generations`` sampled completions
of each prompt. :class:`HfGenerate` (``grpo.engine: hf``) samples with the policy itself through
``transformers``' ``generate`` (KV cache; LoRA and other adapters active, as they train), all
completions of a micro-batch's prompts in one batched call; it reads the live weights, so it has
nothing to sync after an optimizer step. Another engine (a colocated vLLM) would implement the
same two methods, syncing the policy's weights in ``sync_weights``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

import torch

from kubetune.spec.trainer import GrpoConfig


class GenerationEngine(Protocol):
    """Samples completions of prompts with the current policy."""

    def generate(self, prompts: list[list[int]]) -> list[list[int]]:
        """``num_generations`` completions of each prompt (token ids), prompt by prompt: the
        completions of prompt ``i`` are at ``i * num_generations ...``. A completion ends with
        its stop token (end of sequence or of turn) when the model produced one within
        ``max_new_tokens``."""
        ...

    def sync_weights(self) -> None:
        """Take the policy's weights after an optimizer step."""
        ...


class HfGenerate:
    """Sampling with the policy's own ``generate`` (see the module doc).

    Args:
        model: the policy (a PEFT model for adapter methods), not wrapped for DDP.
        config: the GRPO settings (group size, length, temperature, top-p).
        pad_token_id: the tokenizer's padding token.
        stop_ids: the tokens that end a completion (the tokenizer's end-of-sequence token and the
            model's own end-of-turn tokens, :func:`~kubetune.trainer.evaluation.generation.stop_token_ids`).
        device: where the model runs.
        autocast: the loop's autocast context.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: GrpoConfig,
        pad_token_id: int,
        stop_ids: list[int],
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ):
        from transformers import GenerationConfig

        self.model = model
        self.group = config.num_generations
        self.pad_token_id = pad_token_id
        self.stop_ids = set(stop_ids)
        self.device = device
        self.autocast = autocast
        # A fresh config: none of the model's own sampling defaults (top_k, repetition penalty...) apply.
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=0,
            max_new_tokens=config.max_new_tokens,
            pad_token_id=pad_token_id,
            eos_token_id=list(stop_ids),
            use_cache=True,
        )

    def generate(self, prompts: list[list[int]]) -> list[list[int]]:
        """Sample the group of every prompt in one left-padded ``generate`` call."""
        repeated = [ids for ids in prompts for _ in range(self.group)]
        width = max(len(ids) for ids in repeated)
        input_ids = torch.full((len(repeated), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(repeated), width), dtype=torch.long)
        for row, ids in enumerate(repeated):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.autocast():
                output = self.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=attention_mask.to(self.device),
                    generation_config=self.generation_config,
                )
        finally:
            self.model.train(was_training)
        completions = []
        for row in output[:, width:].tolist():
            end = next((index + 1 for index, token in enumerate(row) if token in self.stop_ids), len(row))
            completions.append(row[:end])
        return completions

    def sync_weights(self) -> None:
        """Nothing to do: ``generate`` runs on the live policy."""


#: Each generation engine, by the name ``grpo.engine`` gives (built like :class:`HfGenerate`).
ENGINES: dict[str, Callable[..., GenerationEngine]] = {"hf": HfGenerate}
