"""The native PyTorch training loop: accumulation, clipping, schedule, metrics."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kubetune.spec.trainer import TrainingConfig
from kubetune.trainer.data.batching import collate, micro_batches
from kubetune.trainer.data.formats import IGNORE_INDEX, Example
from kubetune.trainer.data.packing import collate_packed
from kubetune.trainer.kernels.chunked_cross_entropy import linear_cross_entropy_sum
from kubetune.trainer.metrics import MetricsWriter


def loss_sum(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], chunked_loss: bool = False
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over target tokens, and how many targets there were.

    Every batch entry except ``labels`` goes to the model (``attention_mask`` for padded
    batches; ``position_ids`` and sequence boundaries for packed ones). ``chunked_loss`` runs
    the decoder alone and fuses the LM head with the loss, never holding full fp32 logits.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if "position_ids" in inputs:
        # A KV cache makes transformers skip the per-example mask it derives from position_ids.
        inputs["use_cache"] = False
    if chunked_loss:
        labels = F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)
        hidden = model.get_decoder()(**inputs).last_hidden_state
        total = linear_cross_entropy_sum(hidden, model.get_output_embeddings().weight, labels)
        return total, int((labels != IGNORE_INDEX).sum())
    logits = model(**inputs).logits
    labels = batch["labels"][:, 1:]
    logits = logits[:, :-1, :]
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return total, int((labels != IGNORE_INDEX).sum())


def steps_per_epoch(num_examples: int, config: TrainingConfig, world_size: int) -> int:
    """Optimizer steps in one pass over ``num_examples``."""
    micro = math.ceil(num_examples / (config.batch_size * world_size))
    return max(1, math.ceil(micro / config.gradient_accumulation_steps))


def total_steps(num_examples: int, config: TrainingConfig, world_size: int = 1) -> int:
    """Optimizer steps of the whole run: ``max_steps``, or ``epochs`` passes over the data."""
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(steps_per_epoch(num_examples, config, world_size) * config.epochs))


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
class StepResult:
    """What one optimizer step measured."""

    loss: float
    grad_norm: float | None
    real_tokens: int
    padded_tokens: int
    target_tokens: int


def train_step(
    model: torch.nn.Module,
    micro: list[list[Example]],
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig,
    pad_token_id: int,
    device: torch.device,
) -> StepResult:
    """One optimizer step over the accumulated micro-batches.

    The loss is the mean over every target token of the accumulated batch (not a mean of
    per-micro-batch means), so ``batch_size=8`` equals ``batch_size=2`` x 4 accumulation steps.
    """
    targets = sum(ex.num_targets for mb in micro for ex in mb)
    targets_t = torch.tensor([targets], dtype=torch.float64)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = torch.distributed.get_world_size() if distributed else 1
    if distributed:
        torch.distributed.all_reduce(targets_t)
    global_targets = float(targets_t.item())
    total_loss = 0.0
    real = padded = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    for mb in micro:
        host = collate_packed(mb) if config.packing else collate(mb, pad_token_id)
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in host.items()}
        mask = batch.get("attention_mask")
        real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        padded += batch["input_ids"].numel()
        with autocast:
            summed, _ = loss_sum(model, batch, config.chunked_loss)
        # DDP averages gradients over ranks; scale so the result is the global token mean.
        (summed * world / global_targets).backward()
        total_loss += float(summed.detach())
    grad_norm = None
    if config.max_grad_norm is not None:
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
        )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss_t = torch.tensor([total_loss], dtype=torch.float64)
    if distributed:
        torch.distributed.all_reduce(loss_t)
    return StepResult(float(loss_t.item()) / global_targets, grad_norm, real, padded, targets)


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
) -> list[float]:
    """Run optimizer steps ``start_step+1 .. steps``; returns the loss of each step."""
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
        if step % config.log_every == 0 or step == steps:
            metrics.log(
                step,
                loss=round(result.loss, 6),
                lr=lr,
                grad_norm=None if result.grad_norm is None else round(result.grad_norm, 6),
                tokens_per_s=round(result.real_tokens / seconds, 1),
                real_tokens=result.real_tokens,
                padded_tokens=result.padded_tokens,
                epoch=stream.position.epoch,
            )
    return losses
