"""Resumable checkpoints: trainable weights, optimizer, schedule, data position and RNG states.

Layout: ``<output>/checkpoints/step-N/`` holding ``model.pt`` (the trainable weights only: the
adapter, or every weight for a full fine-tune), ``optimizer.pt``, ``trainer_state.pt``
(scheduler, data position), ``rng-<rank>.pt`` per rank and ``meta.json``. A checkpoint is
written under a hidden temporary name, every file is fsynced, ``meta.json`` goes last, and the
folder is renamed into place: a crash leaves either the complete ``step-N`` or no ``step-N``.
Only folders named ``step-N`` that hold ``meta.json`` are ever resumed from.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from kubetune.errors import ConfigError, OutputError
from kubetune.trainer.distributed import DistributedContext, unwrap_model
from kubetune.trainer.loop import DataPosition

_STEP_DIR = re.compile(r"^step-(\d+)$")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


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
        if match and child.is_dir() and (child / "meta.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = complete_checkpoints(root)
    return found[-1][1] if found else None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, param in unwrap_model(model).named_parameters() if param.requires_grad}


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _WriteRecorder:
    """A file wrapper that keeps the OSError of a failed write (torch.save reports only 'unexpected pos')."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def _save(obj: object, path: Path) -> None:
    """``torch.save`` to ``path``, raising the real OSError (disk full...) when a write fails."""
    with open(path, "wb") as handle:
        recorder = _WriteRecorder(handle)
        try:
            torch.save(obj, recorder)
        except RuntimeError:
            if recorder.error is not None:
                raise recorder.error from None
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
) -> Path:
    """Write ``root/step-<step>`` atomically (every rank calls this), then keep the newest ``keep``.

    Raises:
        OutputError: a write failed (disk full, quota, file-size limit); the partial folder is
            removed and every earlier checkpoint is left as it was.
    """
    final = root / f"step-{step}"
    tmp = root / f".step-{step}.tmp"
    # Gathering a sharded model's full state is collective: every rank takes part.
    trainable = _trainable_names(model)
    model_state = {k: v for k, v in get_model_state_dict(model, options=_FULL).items() if k in trainable}
    optim_state = get_optimizer_state_dict(model, optimizer, options=_FULL)
    try:
        if ctx.is_main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            _save(model_state, tmp / "model.pt")
            _save(optim_state, tmp / "optimizer.pt")
            _save(
                {"scheduler": scheduler.state_dict(), "epoch": position.epoch, "micro_batch": position.micro_batch},
                tmp / "trainer_state.pt",
            )
        ctx.barrier()
        _save(_rng_state(), tmp / f"rng-{ctx.rank}.pt")
        ctx.barrier()
        if ctx.is_main:
            for file in tmp.iterdir():
                _fsync_file(file)
            meta = tmp / "meta.json"
            meta.write_text(json.dumps({"step": step, "world_size": ctx.world_size}), encoding="utf-8")
            _fsync_file(meta)
            _fsync_dir(tmp)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(err, final, root) from None
    if ctx.is_main:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync_dir(root)
        for _, old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old)
    ctx.barrier()
    return final


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, ctx: DistributedContext
) -> ResumePoint:
    """Restore everything :func:`save_checkpoint` wrote into the live objects.

    Raises:
        ConfigError: the checkpoint was written by a different number of processes (the data
            position would not line up).
    """
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    if meta["world_size"] != ctx.world_size:
        raise ConfigError(
            f"{path}: written by {meta['world_size']} processes, this run has {ctx.world_size}: resume with the "
            "same number of processes, or set training.resume: never"
        )
    model_state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True, strict=False))
    optim_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    set_optimizer_state_dict(model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True))
    state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(torch.load(path / f"rng-{ctx.rank}.pt", map_location="cpu", weights_only=False))
    return ResumePoint(meta["step"], DataPosition(state["epoch"], state["micro_batch"]), path)
