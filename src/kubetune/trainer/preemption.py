"""Preemption safety: stop requests (SIGTERM, SIGUSR1), the checkpoint schedule, and rank agreement.

A preempted worker (spot reclaim, Kueue preemption, node drain, ``kubetune suspend``) gets
SIGTERM, or SIGUSR1 from schedulers that warn ahead, and a grace period before SIGKILL. The
handler only records the request. At the end of every optimizer step all ranks agree, with one
all-reduce of two flags, whether to checkpoint (the schedule is due on some rank, or some rank
was asked to stop) and whether to stop; so a signal to any one rank makes every rank write the
same complete checkpoint and exit with :data:`~kubetune.errors.PREEMPTED_EXIT_CODE`.

The handler never interrupts a checkpoint being written: a second SIGTERM while saving is only
recorded again, and a SIGKILL mid-write leaves a hidden temporary folder that is never resumed
from (see :mod:`kubetune.trainer.checkpoint`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubetune.spec.trainer import TrainingConfig

if TYPE_CHECKING:  # torch is imported when ranks agree: installing the handlers must not wait for it
    from kubetune.trainer.distributed import DistributedContext

#: The signals that ask a worker to checkpoint and stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """Records SIGTERM and SIGUSR1 instead of dying; the loop acts on it at the next step boundary."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def install(self) -> None:
        """Handle :data:`STOP_SIGNALS` in this process (call from the main thread)."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._record)

    def _record(self, signum: int, _frame) -> None:
        first = self.signal_name is None
        self.signal_name = self.signal_name or signal.Signals(signum).name
        if first:
            # os.write, not print: a handler may run in the middle of another print.
            rank = os.environ.get("RANK", "0")
            line = f"rank {rank}: received {signal.Signals(signum).name}; checkpointing at the end of this step\n"
            os.write(2, line.encode())

    @property
    def requested(self) -> bool:
        """Whether this process was asked to stop."""
        return self.signal_name is not None


class Preempted(Exception):
    """Training stopped on request after writing the checkpoint of ``step``; the job can resume from it."""

    def __init__(self, step: int, path: Path, seconds: float):
        super().__init__(f"preempted after step {step}: checkpoint {path} written in {seconds:.1f} s")
        self.step = step
        self.path = path
        self.seconds = seconds


@dataclass
class Boundary:
    """What every rank does at the end of a step: write a checkpoint, and then stop."""

    checkpoint: bool
    stop: bool


def agree(flags: list[bool], ctx: DistributedContext) -> list[bool]:
    """Each flag set on any rank is set on every rank (one all-reduce; a no-op in one process)."""
    if ctx.world_size == 1:
        return flags
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([int(flag) for flag in flags], dtype=torch.int32, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


class CheckpointSchedule:
    """When to checkpoint: every N steps or every T seconds of training and at the last step (unless
    ``checkpoint_every`` is null), and whenever stopped.

    Training time is measured from the start of this process's loop (or its last checkpoint), so
    the time spent saving does not count towards the next interval.
    """

    def __init__(
        self,
        training: TrainingConfig,
        total_steps: int,
        stop: StopRequest,
        ctx: DistributedContext,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.every_steps = training.checkpoint_interval_steps()
        self.every_s = training.checkpoint_interval_s()
        self.total_steps = total_steps
        self.stop = stop
        self.ctx = ctx
        self.clock = clock
        self.since = clock()

    def _due(self, step: int) -> bool:
        if self.every_steps is None and self.every_s is None:
            return False  # checkpoint_every: null: only when stopped
        if step == self.total_steps:
            return True
        if self.every_steps is not None and step % self.every_steps == 0:
            return True
        return self.every_s is not None and self.clock() - self.since >= self.every_s

    def at_step_end(self, step: int) -> Boundary:
        """The agreed decision for the end of ``step`` (a collective: every rank calls it)."""
        due, stop = agree([self._due(step), self.stop.requested], self.ctx)
        return Boundary(checkpoint=due or stop, stop=stop)

    def after_checkpoint(self) -> bool:
        """Restart the interval; whether a stop arrived while saving (a collective: every rank calls it)."""
        self.since = self.clock()
        (stop,) = agree([self.stop.requested], self.ctx)
        return stop
