"""The native PyTorch training loop: accumulation, clipping, schedule, metrics."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from kubetune.spec.trainer import TrainingConfig
from kubetune.trainer.data.batching import eval_batches, micro_batches, micro_batches_per_epoch
from kubetune.trainer.data.formats import Example
from kubetune.trainer.metrics import MetricsWriter
from kubetune.trainer.objectives.base import Objective
from kubetune.trainer.objectives.sft import SftObjective
from kubetune.trainer.objectives.sft import loss_sum as loss_sum  # the SFT loss, where callers have found it

#: The default objective: next-token cross-entropy (``objective: sft``).
SFT = SftObjective()


class TrainingObjective(torch.nn.Module):
    """The model and its loss as one module: ``forward(batch)`` returns the objective's
    ``(summed loss, units, metric sums, metric counts)`` (see
    :class:`~kubetune.trainer.objectives.base.ObjectiveLoss`).

    DDP and FSDP2 wrap this module rather than the model, so the whole loss computation (the
    chunked loss's decoder-only forward and fused LM head, a DPO reference forward with the
    adapters off, included) runs inside the wrapper's forward: DDP's reducer sees every
    parameter that took part, and FSDP2's root unit has its parameters (embeddings, LM head)
    gathered while the loss uses them. ``objective`` defaults to SFT.
    """

    def __init__(self, model: torch.nn.Module, chunked_loss: bool = False, objective: Objective = SFT):
        super().__init__()
        self.model = model
        self.chunked_loss = chunked_loss
        self.objective = objective

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, dict[str, float], dict[str, float]]:
        """The objective's summed loss over the batch, its units (targets, pairs), metric sums
        and the counts of the metrics not averaged over every unit."""
        out = self.objective.loss(self.model, batch, self.chunked_loss)
        return out.summed, out.units, out.metrics, out.counts


def objective_of(model: torch.nn.Module) -> Objective:
    """The objective of a :class:`TrainingObjective`, or of a DDP wrapper of one."""
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    return inner.objective


def steps_per_epoch(num_examples: int, config: TrainingConfig, world_size: int) -> int:
    """Optimizer steps in one pass over ``num_examples``."""
    micro = micro_batches_per_epoch(num_examples, config.batch_size, world_size)
    return max(1, math.ceil(micro / config.gradient_accumulation_steps))


def total_steps(num_examples: int, config: TrainingConfig, world_size: int = 1) -> int:
    """Optimizer steps of the whole run: ``max_steps``, or ``epochs`` passes over the data."""
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(steps_per_epoch(num_examples, config, world_size) * config.epochs))


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _peak_gib(device: torch.device) -> float | None:
    """Peak GPU memory allocated so far (GiB), what the memory plan estimates; None off CUDA."""
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _autocast(config: TrainingConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


@dataclass
class DataPosition:
    """Where the loop is in the data: the epoch and the micro-batch within it."""

    epoch: int = 0
    micro_batch: int = 0


class MicroBatchStream:
    """Endless stream of this rank's micro-batches, epoch after epoch, with a resumable position."""

    def __init__(self, examples: list[Example], config: TrainingConfig, rank: int, world_size: int):
        self.examples = examples
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.position = DataPosition()

    def __iter__(self):
        while True:
            epoch = self.position.epoch
            batches = list(
                micro_batches(
                    self.examples, self.config.batch_size, epoch, self.config.seed, self.rank, self.world_size
                )
            )
            while self.position.micro_batch < len(batches):
                batch = batches[self.position.micro_batch]
                self.position.micro_batch += 1
                yield batch
            self.position = DataPosition(epoch + 1, 0)


@dataclass
class StepEnd:
    """What the end-of-step hook decided: whether the loop stops after this step."""

    stop: bool = False


@dataclass
class StepResult:
    """What one optimizer step measured."""

    loss: float
    grad_norm: float | None
    real_tokens: int
    padded_tokens: int
    target_tokens: int
    #: The objective's values (None: no unit of the step had it, e.g. KTO's chosen reward
    #: in a step without desirable rows).
    objective: dict[str, float | None] = field(default_factory=dict)


def train_step(
    model: torch.nn.Module,
    micro: list[list[Example]],
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig,
    pad_token_id: int,
    device: torch.device,
) -> StepResult:
    """One optimizer step over the accumulated micro-batches.

    ``model`` is a :class:`TrainingObjective`, or a DDP/FSDP2 wrapper of one; its objective
    collates the micro-batches. The loss is the mean over every unit of the accumulated batch
    on all ranks (target tokens for SFT, pairs for the preference objectives; not a mean of
    per-micro-batch means), so ``batch_size=8`` equals ``batch_size=2`` x 4 accumulation steps,
    and 2 ranks x 4 equals 1 rank x 8. The objective's own values are averaged the same way.
    """
    targets = sum(ex.num_targets for mb in micro for ex in mb)
    targets_t = torch.tensor([targets], dtype=torch.float64, device=device)
    distributed = _distributed()
    world = torch.distributed.get_world_size() if distributed else 1
    if distributed:
        torch.distributed.all_reduce(targets_t)
    global_targets = float(targets_t.item())
    total_loss = 0.0
    real = padded = 0
    values: dict[str, float] = {}
    counts: dict[str, float] = {}
    can_defer_sync = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    for index, mb in enumerate(micro):
        host = objective_of(model).collate(mb, pad_token_id, config.packing)
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in host.items()}
        mask = batch.get("attention_mask")
        real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        padded += batch["input_ids"].numel()
        last = index == len(micro) - 1
        sync = model.no_sync() if can_defer_sync and not last else contextlib.nullcontext()
        with sync:
            with _autocast(config, device):
                summed, _, metrics, metric_counts = model(batch)
            for name, value in metrics.items():
                values[name] = values.get(name, 0.0) + value
            for name, count in metric_counts.items():
                counts[name] = counts.get(name, 0.0) + count
            # DDP and FSDP average gradients over ranks; scale so the result is the global token mean.
            (summed * world / global_targets).backward()
        total_loss += float(summed.detach())
    grad_norm = None
    if config.max_grad_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
        grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    names = sorted(values)
    counted = sorted(counts)
    sums = torch.tensor(
        [total_loss, real, padded, *(values[n] for n in names), *(counts[n] for n in counted)],
        dtype=torch.float64,
        device=device,
    )
    if distributed:
        torch.distributed.all_reduce(sums)
    divisors = {name: float(sums[3 + len(names) + i]) for i, name in enumerate(counted)}
    means = {
        name: (float(sums[3 + i]) / divisors[name] if divisors[name] else None)
        if name in divisors
        else float(sums[3 + i]) / global_targets
        for i, name in enumerate(names)
    }
    return StepResult(float(sums[0]) / global_targets, grad_norm, int(sums[1]), int(sums[2]), targets, means)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    examples: list[Example],
    config: TrainingConfig,
    pad_token_id: int,
    device: torch.device,
) -> float:
    """Mean loss per unit (target token, pair) over ``examples`` (shared out over the ranks);
    ``model`` as in :func:`train_step`."""
    distributed = _distributed()
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    # DDP's forward may broadcast buffers (a collective); the wrapped module needs none.
    forward_model = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    forward_model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    for examples_mb, counts in eval_batches(examples, config.batch_size, rank, world):
        host = objective_of(forward_model).collate(examples_mb, pad_token_id, packing=False)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in host.items()}
        with _autocast(config, device):
            summed, units, _, _ = forward_model(batch)
        if counts:
            sums += torch.tensor([float(summed), units], dtype=torch.float64, device=device)
    forward_model.train()
    if distributed:
        torch.distributed.all_reduce(sums)
    return float(sums[0] / sums[1])


def run_loop(
    model: torch.nn.Module,
    stream: MicroBatchStream,
    optimizer: torch.optim.Optimizer,
    scheduler,
    config: TrainingConfig,
    steps: int,
    pad_token_id: int,
    device: torch.device,
    metrics: MetricsWriter,
    start_step: int = 0,
    eval_examples: list[Example] | None = None,
    on_step_end: Callable[[int], StepEnd | None] | None = None,
) -> list[float]:
    """Run optimizer steps ``start_step+1 .. steps``; returns the loss of each step.

    With ``eval_examples``, the eval loss is computed every ``config.eval_every`` steps and at
    the last step. ``on_step_end(step)`` runs after each step's metrics are logged (so a
    checkpoint of a step always has its record; checkpointing), and may stop the loop.
    The objective's own values go into each progress record.
    """
    model.train()
    losses: list[float] = []
    batches = iter(stream)
    for step in range(start_step + 1, steps + 1):
        started = time.perf_counter()
        micro = [next(batches) for _ in range(config.gradient_accumulation_steps)]
        result = train_step(model, micro, optimizer, config, pad_token_id, device)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        losses.append(result.loss)
        seconds = time.perf_counter() - started
        eval_loss = None
        if eval_examples and (step == steps or (config.eval_every and step % config.eval_every == 0)):
            eval_loss = round(evaluate(model, eval_examples, config, pad_token_id, device), 6)
        if step % config.log_every == 0 or step == steps or eval_loss is not None:
            metrics.log(
                step,
                loss=round(result.loss, 6),
                lr=lr,
                grad_norm=None if result.grad_norm is None else round(result.grad_norm, 6),
                tokens_per_s=round(result.real_tokens / seconds, 1),
                real_tokens=result.real_tokens,
                padded_tokens=result.padded_tokens,
                eval_loss=eval_loss,
                epoch=stream.position.epoch,
                gpu_peak_gib=_peak_gib(device),
                **{name: round(value, 6) for name, value in result.objective.items() if value is not None},
            )
        end = on_step_end(step) if on_step_end is not None else None
        if end is not None and end.stop:
            break
    return losses
