"""Resumable checkpoints: trainable weights, optimizer, schedule, data position and RNG states.

Layout: ``<output>/checkpoints/step-N/`` holding ``state/`` (a ``torch.distributed.checkpoint``
folder with the trainable weights, i.e. the adapter or every weight of a full fine-tune, and
the optimizer state; every rank writes its own shards, replicated DDP tensors once),
``trainer_state.pt`` (scheduler, data position), ``rng-<rank>.pt`` per rank and ``meta.json``.
A checkpoint is written under a hidden temporary name, every file is fsynced, ``meta.json``
goes last, and the folder is renamed into place: a crash leaves either the complete ``step-N``
or no ``step-N``. Only folders named ``step-N`` that hold ``meta.json`` are ever resumed from.

The shards are resharded on load: a checkpoint written by N processes (DDP or FSDP2) resumes
on M processes with either strategy, as long as the data position maps onto the new global
micro-batch (see :func:`load_checkpoint`).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from kubetune.errors import ConfigError, OutputError
from kubetune.trainer.distributed import DistributedContext, unwrap_model
from kubetune.trainer.loop import DataPosition, MicroBatchStream, StepEnd
from kubetune.trainer.metrics import MetricsWriter
from kubetune.trainer.preemption import CheckpointSchedule, Preempted

_STEP_DIR = re.compile(r"^step-(\d+)$")
#: The torch.distributed.checkpoint folder inside ``step-N``.
STATE_DIR = "state"
#: Written last into ``step-N``: its presence is what makes a checkpoint complete.
META_FILE = "meta.json"


@dataclass
class ResumePoint:
    """What a loaded checkpoint restored: the last completed step and the data position."""

    step: int
    position: DataPosition
    path: Path


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / META_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = complete_checkpoints(root)
    return found[-1][1] if found else None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint so that a kill half-way never leaves a partial folder that looks complete.

    ``meta.json`` goes first (and the folder is fsynced): from then on the folder is no longer
    picked for resume, whatever the ``rmtree`` that follows manages to delete before a kill.
    """
    (path / META_FILE).unlink(missing_ok=True)
    _fsync_dir(path)
    shutil.rmtree(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """This rank's view of the trainable weights and optimizer state (DTensor shards under FSDP2)."""
    inner = unwrap_model(model)
    trainable = {name for name, param in inner.named_parameters() if param.requires_grad}
    weights = {k: v for k, v in get_model_state_dict(inner).items() if k in trainable}
    return {"model": weights, "optimizer": get_optimizer_state_dict(inner, optimizer)}


def _os_error(err: BaseException, recorded: list[OSError]) -> OSError | None:
    """The OSError behind a failed write (torch.distributed.checkpoint wraps each rank's error,
    and its torch.save reports a failed write as a RuntimeError; ``recorded`` has the original)."""
    if isinstance(err, OSError):
        return err
    if isinstance(err, CheckpointException):
        for failure, _ in err.failures.values():
            if isinstance(failure, OSError):
                return failure
        return recorded[0] if recorded else None
    return None


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        # This process's GPU only: a resume may see another number of GPUs (resharding).
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class _WriteRecorder:
    """A file wrapper that keeps the OSError of a failed write (torch.save reports only 'unexpected pos')."""

    def __init__(self, handle, errors: list[OSError]) -> None:
        self.handle = handle
        self.errors = errors

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.errors.append(err)
            raise

    def __getattr__(self, name: str):
        return getattr(self.handle, name)


class _RecordingFileSystem(dcp.filesystem.FileSystem):
    """torch.distributed.checkpoint's file system, keeping the OSErrors of failed writes (disk full...)."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[OSError] = []

    @contextmanager
    def create_stream(self, path, mode: str):
        with super().create_stream(path, mode) as stream:
            yield _WriteRecorder(stream, self.errors) if "w" in mode else stream


def _state_writer(path: Path) -> dcp.FileSystemWriter:
    writer = dcp.FileSystemWriter(path, sync_files=True)
    writer.fs = _RecordingFileSystem()
    return writer


def _save(obj: object, path: Path) -> None:
    """``torch.save`` to ``path``, raising the real OSError (disk full...) when a write fails."""
    with open(path, "wb") as handle:
        errors: list[OSError] = []
        try:
            torch.save(obj, _WriteRecorder(handle, errors))
        except RuntimeError:
            if errors:
                raise errors[0] from None
            raise


_WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "a file exceeds the file-size limit",
}


def _write_failed(err: OSError, final: Path, root: Path) -> OutputError:
    reason = _WRITE_FAILURES.get(err.errno, (err.strerror or str(err)).lower())
    previous = latest_checkpoint(root)
    kept = (
        f"the previous checkpoint {previous} is kept; free space, and the job resumes from it"
        if previous is not None
        else "no earlier checkpoint exists"
    )
    return OutputError(f"cannot write checkpoint {final}: {reason} ({kept})")


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    position: DataPosition,
    ctx: DistributedContext,
    keep: int,
    global_micro_batch: int,
) -> Path:
    """Write ``root/step-<step>`` atomically (every rank calls this), then keep the newest ``keep``.

    ``global_micro_batch`` is how many examples one micro-step takes over all ranks
    (``batch_size x world_size``): it lets another number of processes find the data position.

    Raises:
        OutputError: a write failed (disk full, quota, file-size limit); the partial folder is
            removed and every earlier checkpoint is left as it was.
    """
    final = root / f"step-{step}"
    tmp = root / f".step-{step}.tmp"
    state = _sharded_state(model, optimizer)
    writer = _state_writer(tmp / STATE_DIR)
    try:
        if ctx.is_main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        ctx.barrier()
        # Collective: every rank writes its shards; rank 0 writes the metadata file once all are done.
        dcp.save(state, storage_writer=writer, no_dist=ctx.world_size == 1)
        if ctx.is_main:
            _save(
                {
                    "scheduler": scheduler.state_dict(),
                    "epoch": position.epoch,
                    "micro_batch": position.micro_batch,
                    "global_micro_batch": global_micro_batch,
                },
                tmp / "trainer_state.pt",
            )
        _save(_rng_state(), tmp / f"rng-{ctx.rank}.pt")
        ctx.barrier()
        if ctx.is_main:
            for file in tmp.iterdir():
                if file.is_file():
                    _fsync_file(file)
            _fsync_dir(tmp / STATE_DIR)
            meta = tmp / META_FILE
            meta.write_text(json.dumps({"step": step, "world_size": ctx.world_size}), encoding="utf-8")
            _fsync_file(meta)
            _fsync_dir(tmp)
    except (OSError, CheckpointException) as err:
        os_error = _os_error(err, writer.fs.errors)
        if os_error is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(os_error, final, root) from None
    if ctx.is_main:
        if final.exists():
            remove_checkpoint(final)
        tmp.rename(final)
        _fsync_dir(root)
        for _, old in complete_checkpoints(root)[:-keep]:
            remove_checkpoint(old)
    ctx.barrier()
    return final


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    ctx: DistributedContext,
    global_micro_batch: int,
) -> ResumePoint:
    """Restore everything :func:`save_checkpoint` wrote into the live objects (every rank calls this).

    The weights and optimizer state are resharded onto this run's processes and strategy. The
    data position is kept in examples: ``micro_batch x`` the writer's global micro-batch must be
    a whole number of this run's global micro-batches (``batch_size x world_size``). RNG states
    are restored for ranks the writer had; extra ranks keep their seeded state.

    Raises:
        ConfigError: the data position does not map onto this run's global micro-batch.
    """
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    consumed = state["micro_batch"] * state["global_micro_batch"]
    micro_batch, rest = divmod(consumed, global_micro_batch)
    if rest:
        raise ConfigError(
            f"{path}: written with {state['global_micro_batch']} examples per micro-step over all processes, after "
            f"{consumed} examples of epoch {state['epoch']}; this run takes {global_micro_batch} (batch_size x "
            "processes), which does not divide it: resume with a global micro-batch that does, or set "
            "training.resume: never"
        )
    sharded = _sharded_state(model, optimizer)
    dcp.load(sharded, storage_reader=dcp.FileSystemReader(path / STATE_DIR), no_dist=ctx.world_size == 1)
    inner = unwrap_model(model)
    set_model_state_dict(inner, sharded["model"], options=StateDictOptions(strict=False))
    set_optimizer_state_dict(inner, optimizer, sharded["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = path / f"rng-{ctx.rank}.pt"
    if rng.is_file():
        _set_rng_state(torch.load(rng, map_location="cpu", weights_only=False))
    if ctx.is_main and meta["world_size"] != ctx.world_size:
        print(f"resharded {path} from {meta['world_size']} to {ctx.world_size} processes", flush=True)
    return ResumePoint(meta["step"], DataPosition(state["epoch"], micro_batch), path)


class StepCheckpointer:
    """The loop's end-of-step hook: writes the checkpoints :class:`~kubetune.trainer.preemption.CheckpointSchedule`
    asks for, notes each one's duration on its step's progress record and stops the loop when
    a stop was requested (the :class:`~kubetune.trainer.preemption.Preempted` to raise is then
    in :attr:`preempted`).
    """

    def __init__(
        self,
        root: Path,
        schedule: CheckpointSchedule,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        stream: MicroBatchStream,
        ctx: DistributedContext,
        keep: int,
        global_micro_batch: int,
        metrics: MetricsWriter,
        say: Callable[[str], None],
    ):
        self.root = root
        self.schedule = schedule
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.stream = stream
        self.ctx = ctx
        self.keep = keep
        self.global_micro_batch = global_micro_batch
        self.metrics = metrics
        self.say = say
        self.preempted: Preempted | None = None

    def __call__(self, step: int) -> StepEnd | None:
        """Checkpoint at the end of ``step`` if the schedule (or a stop request) says so."""
        boundary = self.schedule.at_step_end(step)
        if not boundary.checkpoint:
            return None
        started = time.perf_counter()
        path = save_checkpoint(
            self.root,
            step,
            self.model,
            self.optimizer,
            self.scheduler,
            self.stream.position,
            self.ctx,
            self.keep,
            self.global_micro_batch,
        )
        seconds = time.perf_counter() - started
        self.say(f"checkpoint: {path} ({seconds:.1f} s)")
        self.metrics.annotate(step, checkpoint_s=round(seconds, 3))
        if self.schedule.after_checkpoint() or boundary.stop:
            self.preempted = Preempted(step, path, seconds)
        return StepEnd(stop=self.preempted is not None)
