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

    NCCL is used with CUDA GPUs (one per local rank), gloo on CPU. A single process without
    torchrun gets world size 1 and no process group.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistributedContext(rank, local_rank, world, device)


def close_distributed() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, ctx: DistributedContext, strategy: str) -> torch.nn.Module:
    """Wrap ``model`` for multi-process training: DDP replicas, or FSDP2 shards per decoder layer.

    Raises:
        ConfigError: FSDP was asked for on a model with no trainable weights to shard.
    """
    if ctx.world_size == 1:
        return model
    if strategy == "ddp":
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    from torch.distributed.fsdp import fully_shard

    block_names = set(getattr(model, "_no_split_modules", None) or [])
    blocks = [module for module in model.modules() if type(module).__name__ in block_names]
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("training.distributed 'fsdp': the model has no trainable parameters to shard")
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The user's model inside a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
