"""Load a model sharded over the processes (FSDP2) without any process holding more than its share on the GPU.

Every rank builds the model on the meta device (no memory), applies the method (PEFT adapter)
and the speed levers, and shards it with FSDP2; the shards are then allocated on the rank's
device. Rank 0 alone reads the weights from the safetensors files (into host memory, one copy
per job) and initialises the adapter with the run's seed; the weights are broadcast tensor by
tensor and each rank keeps only its shard. So:

- host memory: rank 0 holds one copy of the model (bf16: 2 bytes per parameter), every other
  process none: it does not grow with the number of processes;
- GPU memory per process: its 1/world_size share of the weights (and gradients and optimizer
  state of the trainable ones), plus one tensor in flight during the broadcast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.distributed import DistributedContext, shard_model
from kubetune.trainer.loop import SFT, TrainingObjective
from kubetune.trainer.model_loading import apply_method, build_skeleton, load_model, prepare_for_training
from kubetune.trainer.objectives.base import Objective


def storage_precision(config: LLMConfig) -> str:
    """The dtype the sharded weights are kept in: fp32 master weights for a full fine-tune.

    With ``precision: bf16`` FSDP2's mixed-precision policy all-gathers and computes in bf16
    and reduces gradients in fp32; the optimizer updates fp32 shards. An adapter method keeps
    the frozen base in the training precision (its adapters are fp32, as PEFT makes them).
    """
    return "fp32" if config.method == "full" else config.training.precision


def load_sharded(
    model_path: Path,
    config: LLMConfig,
    ctx: DistributedContext,
    label_names: list[str] | None,
    pad_token_id: int | None,
    apply_levers: Callable[[torch.nn.Module], None],
    objective: Objective = SFT,
) -> TrainingObjective:
    """The FSDP2-sharded training objective of ``config``'s model, weights read by rank 0 only.

    ``apply_levers(model)`` switches on the speed levers (packed attention, fused LoRA,
    per-layer compile) before sharding, as on the unsharded path; ``objective`` is the loss.
    """
    storage = storage_precision(config)
    skeleton = build_skeleton(model_path, config.model, storage, label_names, pad_token_id)
    skeleton = prepare_for_training(skeleton, config)
    with torch.device("meta"):
        skeleton = apply_method(skeleton, config, model_path)
    apply_levers(skeleton)
    wrapped = shard_model(
        TrainingObjective(skeleton, config.training.chunked_loss, objective), config.training.precision
    )

    full_state: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    if ctx.is_main:
        real = load_model(model_path, config.model, storage, label_names, pad_token_id)
        real = prepare_for_training(real, config)
        # The adapter's initial weights depend on the seed alone, as on the unsharded path.
        torch.manual_seed(config.training.seed)
        real = apply_method(real, config, model_path)
        full_state = real.state_dict()
        buffers = {name: buffer for name, buffer in real.named_buffers()}
        del real
    wrapped.to_empty(device=ctx.device)
    set_model_state_dict(
        skeleton, full_state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    )
    materialize_buffers(skeleton, buffers, ctx)
    return wrapped


@torch.no_grad()
def materialize_buffers(model: torch.nn.Module, buffers: dict[str, torch.Tensor], ctx: DistributedContext) -> None:
    """Fill every buffer (rotary tables...; non-persistent ones are in no state dict) from rank 0's ``buffers``."""
    for name, buffer in model.named_buffers():
        if ctx.is_main:
            buffer.copy_(buffers[name])
        dist.broadcast(buffer, src=0)
