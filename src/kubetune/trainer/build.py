"""The model unit of the trainer: from the model's files (or a model built in memory) to the
training objective that the loop steps, wrapped for the job's processes.

:func:`prepare_model` turns a loaded transformers model into the policy (training settings,
the method's adapter initialised from the seed, the device, the speed levers);
:func:`build_model` loads the model from its files, prepares it, sets up the objective
(its reference model) and wraps it (DDP, or FSDP2 shards built on the meta device). The
benchmarks prepare the models they build from a config with the same functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.data.pipeline import PreparedData
from kubetune.trainer.distributed import DistributedContext, unwrap_model, wrap_model
from kubetune.trainer.kernels.compilation import compile_layers
from kubetune.trainer.kernels.lora_linear import fuse_lora_linears
from kubetune.trainer.kernels.packed_attention import use_packed_attention
from kubetune.trainer.loop import TrainingObjective
from kubetune.trainer.methods import method_support, trains_adapter
from kubetune.trainer.model_loading import apply_method, count_parameters, load_model, prepare_for_training
from kubetune.trainer.objectives import Objective, prepare_objective
from kubetune.trainer.sharded_loading import load_sharded


def apply_levers(model: torch.nn.Module, config: LLMConfig, compile_cache: Path | None = None) -> None:
    """Switch on the speed levers ``config.training`` asks for (all resolved, none ``auto``):
    packed attention, fused LoRA linears (methods that allow them), per-layer compile.

    Compiled graphs land in ``compile_cache`` (the run directory's), so a restart of the job
    reuses them instead of compiling again.
    """
    training = config.training
    if training.packing:
        use_packed_attention(model)
    if training.fused_lora and method_support(config).lora_kernels:
        fuse_lora_linears(model)
    if training.compile:
        if compile_cache is not None:
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache))
        compile_layers(model)


def prepare_model(
    model: torch.nn.Module,
    config: LLMConfig,
    device: torch.device,
    model_path: Path | None = None,
    compile_cache: Path | None = None,
) -> torch.nn.Module:
    """The policy from a loaded model: training settings (gradient checkpointing...), the
    method applied (an adapter's initial weights drawn from ``config.training.seed`` alone),
    moved to ``device`` (a quantized base stays where it was loaded) and the speed levers on."""
    model = prepare_for_training(model, config)
    # Adapter initialisation draws random numbers: seed right before it so the initial weights
    # depend on the seed alone (not on what loading the model consumed).
    torch.manual_seed(config.training.seed)
    model = apply_method(model, config, model_path)
    if not method_support(config).quantized_base:
        model = model.to(device)
    apply_levers(model, config, compile_cache)
    return model


@dataclass
class BuiltModel:
    """The training objective the loop steps, and the policy's parameter counts.

    Attributes:
        model: a :class:`~kubetune.trainer.loop.TrainingObjective`, wrapped for DDP or sharded
            with FSDP2 when the job has several processes.
        trainable: trainable parameters (a shard counts its global size).
        total: all parameters.
    """

    model: torch.nn.Module
    trainable: int
    total: int


def build_model(
    config: LLMConfig,
    model_path: Path,
    objective: Objective,
    data: PreparedData,
    pad_token_id: int,
    ctx: DistributedContext,
    layout: RunDir,
    strategy: str,
) -> BuiltModel:
    """Load, prepare and wrap ``config``'s model with ``objective`` as its loss.

    ``strategy`` (``ddp`` or ``fsdp``) applies with several processes. Under FSDP every rank
    builds the model on the meta device and rank 0 reads the weights
    (:func:`~kubetune.trainer.sharded_loading.load_sharded`).

    Raises:
        ConfigError: the objective cannot run on FSDP2 shards (see
            :meth:`~kubetune.spec.trainer.ObjectiveSection.sharding_problem`).
    """
    training = config.training
    label_names = objective.head_labels or data.label_names
    if ctx.world_size > 1 and strategy == "fsdp":
        problem = config.objective_config.sharding_problem(full_finetune=not trains_adapter(config))
        if problem is not None:
            raise ConfigError(problem)
        model = load_sharded(
            model_path,
            config,
            ctx,
            label_names,
            pad_token_id,
            lambda inner: apply_levers(inner, config, layout.compile_cache),
            objective,
        )
        prepare_objective(objective, unwrap_model(model), config, data, pad_token_id, ctx, layout)
        trainable, total = count_parameters(model)  # DTensor shards count their global size
        return BuiltModel(model, trainable, total)
    quantize_on = ctx.device if method_support(config).quantized_base else None
    inner = load_model(model_path, config.model, training.precision, label_names, pad_token_id, quantize_on)
    inner = prepare_model(inner, config, ctx.device, model_path, layout.compile_cache)
    trainable, total = count_parameters(inner)
    prepare_objective(objective, inner, config, data, pad_token_id, ctx, layout)
    model = wrap_model(TrainingObjective(inner, training.chunked_loss, objective), ctx, strategy, training.precision)
    return BuiltModel(model, trainable, total)
