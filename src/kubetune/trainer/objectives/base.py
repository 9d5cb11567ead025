"""What an objective is to the training loop: a collate step and a loss from a batch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch


@dataclass
class ObjectiveLoss:
    """The loss of one micro-batch.

    Attributes:
        summed: the loss summed over the batch's units (target tokens for SFT, pairs for the
            preference objectives); the loop divides by the units of the whole step.
        units: how many units the batch had.
        metrics: objective-specific values summed over the units (``reward_margin``...); the
            loop reports their mean per unit in the progress record's ``objective`` values.
        counts: for a metric not defined on every unit (KTO's chosen reward: desirable rows
            only), how many units it was summed over; the loop divides by their total instead.
    """

    summed: torch.Tensor
    units: int
    metrics: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PrepareContext:
    """What :meth:`Objective.prepare` may need: the run's examples and loop settings.

    Attributes:
        examples: every tokenized example of the run (train and eval), for one-off passes.
        batch_size: examples per forward pass.
        pad_token_id: the tokenizer's padding token.
        device: where the model runs.
        full_finetune: every weight trains (no adapter that could be switched off).
        cache_file: where a one-off pass stores its results, so a resumed run reads them back
            (None: store nothing).
        reuse_cache: read ``cache_file`` when it exists (``resume: auto``); else overwrite it.
        is_main: this process writes ``cache_file`` (rank 0).
        autocast: the loop's autocast context (bf16 or none), for forwards outside the loop.
    """

    examples: list
    batch_size: int
    pad_token_id: int
    device: torch.device
    full_finetune: bool
    cache_file: Path | None = None
    reuse_cache: bool = True
    is_main: bool = True
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


class Objective:
    """The training loss, pluggable: subclasses register under a name
    (:func:`register_objective`) and are built from the typed config of the same name
    (:data:`kubetune.spec.trainer.ObjectiveConfig`).
    """

    name: str = ""
    #: Output names of the classification head the objective trains (None: the data's classes).
    head_labels: tuple[str, ...] | None = None

    def collate(self, examples: list, pad_token_id: int, packing: bool) -> dict[str, Any]:
        """Host tensors for one micro-batch of ``examples`` (padded, or one packed row)."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], chunked_loss: bool = False) -> ObjectiveLoss:
        """The summed loss of ``batch`` (already on the model's device) under ``model``."""
        raise NotImplementedError

    def prepare(self, model: torch.nn.Module, context: PrepareContext) -> None:
        """Set up what the loss needs besides the policy (a reference model); runs once, on
        every rank, after the method is applied and before the model is wrapped for DDP/FSDP."""


#: Each objective's class, by the name ``objective:`` gives; built from its typed config.
OBJECTIVES: dict[str, Callable[[Any], Objective]] = {}

_Registered = TypeVar("_Registered", bound=type[Objective])


def register_objective(cls: _Registered) -> _Registered:
    """Class decorator: make ``cls`` the objective ``objective: <cls.name>`` builds.

    Raises:
        ValueError: the name is empty or taken by another class.
    """
    if not cls.name or OBJECTIVES.get(cls.name, cls) is not cls:
        raise ValueError(f"objective class {cls.__qualname__}: name {cls.name!r} is empty or registered already")
    OBJECTIVES[cls.name] = cls
    return cls
