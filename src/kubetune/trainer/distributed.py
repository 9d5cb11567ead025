"""Multi-process training: the torchrun environment, process groups, DDP and FSDP2 wrapping."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kubetune.errors import ConfigError


@dataclass
class DistributedContext:
    """This process's place in the job: its rank, how many processes, and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    #: Whether :func:`init_distributed` created the process group (and so :func:`close_distributed` ends it).
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 writes metrics, checkpoints' shared files and exports."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (a no-op in a single process)."""
        if self.world_size > 1:
            dist.barrier()


def init_distributed() -> DistributedContext:
    """Join the process group that torchrun describes (``WORLD_SIZE``, ``RANK``...), if any.

    NCCL is used with CUDA GPUs (one per process), gloo on CPU. A single process without
    torchrun gets world size 1 and no process group. A process group the caller already joined
    is used as it is (and left open by :func:`close_distributed`).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        # The global rank, not the local one: several local "nodes" on one host (the local
        # backend's num_nodes) then use distinct GPUs; on homogeneous nodes both agree.
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    owns_group = world > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistributedContext(rank, local_rank, world, device, owns_group)


def close_distributed(ctx: DistributedContext) -> None:
    """Leave the process group if :func:`init_distributed` joined it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated decoder blocks of a transformers model (each becomes one FSDP2 unit)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if layers:
        return layers
    block_names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in block_names]


def mixed_precision_policy(precision: str):
    """FSDP2's policy: bf16 all-gathers and compute, fp32 gradient reduction (None in fp32)."""
    if precision != "bf16":
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard_model(objective: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Shard ``objective`` in place with FSDP2: one unit per decoder layer, the rest in the root unit.

    Works on meta-device modules too (materialize them afterwards, see
    :mod:`kubetune.trainer.sharded_loading`). Frozen and trainable parameters may share a unit
    (a LoRA layer's base weight and its adapter): only trainable ones get gradients.

    Raises:
        ConfigError: the model has no trainable parameters.
    """
    from torch.distributed.fsdp import fully_shard

    if not any(p.requires_grad for p in objective.parameters()):
        raise ConfigError("training.distributed 'fsdp': the model has no trainable parameters to shard")
    policy = mixed_precision_policy(precision)
    options = {"mp_policy": policy} if policy is not None else {}
    for layer in decoder_layers(objective):
        fully_shard(layer, **options)
    fully_shard(objective, **options)
    return objective


def wrap_model(objective: torch.nn.Module, ctx: DistributedContext, strategy: str, precision: str = "fp32"):
    """Wrap a :class:`~kubetune.trainer.loop.TrainingObjective` for multi-process training.

    ``ddp``: a DDP replica per process. ``fsdp``: FSDP2 shards of an already loaded model (see
    :func:`shard_model`; the trainer builds sharded models on the meta device instead, see
    :mod:`kubetune.trainer.sharded_loading`).
    """
    if ctx.world_size == 1:
        return objective
    if strategy == "ddp":
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # Buffers (rotary frequencies) are constants every rank computes itself: broadcasting them
        # before each forward would only add a collective per step. Gradients live in the
        # all-reduce buckets instead of being copied into them.
        return torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=device_ids, broadcast_buffers=False, gradient_as_bucket_view=True
        )
    return shard_model(objective, precision)


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or the objective around it) holds FSDP2 shards rather than whole weights."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The user's model (PEFT or transformers) inside the DDP wrapper and the training objective.

    FSDP2 shards in place: the returned model's parameters are then DTensor shards.
    """
    from kubetune.trainer.loop import TrainingObjective

    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model.model if isinstance(model, TrainingObjective) else model
