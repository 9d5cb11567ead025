"""Training objectives: the loss from a batch, one module per objective, found by name.

Adding an objective is one module in this package (a subclass of :class:`~.base.Objective`
decorated with :func:`~.base.register_objective`; every module here is imported, so it is found
without being listed) plus its typed config class in :mod:`kubetune.spec.trainer`.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import partial

import torch

from kubetune.contracts.run_dir import RunDir
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.data.pipeline import PreparedData
from kubetune.trainer.distributed import DistributedContext
from kubetune.trainer.methods import trains_adapter
from kubetune.trainer.objectives.base import OBJECTIVES, Objective, ObjectiveLoss, PrepareContext, register_objective

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_objective(config: LLMConfig) -> Objective:
    """The objective ``config.objective`` names, built from its typed config section."""
    return OBJECTIVES[config.objective](config.objective_config)


def prepare_objective(
    objective: Objective,
    model: torch.nn.Module,
    config: LLMConfig,
    data: PreparedData,
    pad_token_id: int,
    ctx: DistributedContext,
    layout: RunDir,
) -> None:
    """Run ``objective.prepare`` with this run's examples (train and eval), settings and files.

    Args:
        objective: from :func:`build_objective`.
        model: the policy, with its method applied, not yet wrapped for DDP/FSDP.
        config: the job's LLM config.
        data: the run's :class:`~kubetune.trainer.data.pipeline.PreparedData`.
        pad_token_id: the tokenizer's padding token.
        ctx: the process's :class:`~kubetune.trainer.distributed.DistributedContext`.
        layout: the run directory.
    """
    device = ctx.device
    context = PrepareContext(
        examples=[*data.train, *data.eval],
        batch_size=config.training.batch_size,
        pad_token_id=pad_token_id,
        device=device,
        full_finetune=not trains_adapter(config),
        cache_file=layout.reference_logps,
        reuse_cache=config.training.resume == "auto",
        is_main=ctx.is_main,
        autocast=partial(
            torch.autocast, device.type, dtype=torch.bfloat16, enabled=config.training.precision == "bf16"
        ),
    )
    objective.prepare(model, context)


__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveLoss",
    "PrepareContext",
    "build_objective",
    "prepare_objective",
    "register_objective",
]
