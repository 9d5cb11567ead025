"""The trainer's phase record: what a job is doing before its first step (and after its last).

Rank 0 of the trainer writes ``<run>/output/phase.json`` (one typed record, replaced atomically)
as it moves through loading the model, tokenizing, compiling, training and exporting; the local
backend reads it into :attr:`kubetune.client.Job.phase`, so ``kubetune train``/``wait`` show it
instead of ``0/?``. Defined here, a leaf every layer may import, so the writer (``trainer``) and
the readers (``backends``) share one definition.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

#: The phase record's file name, in ``<run>/output/``.
PHASE_FILE = "phase.json"


class Phase(str, Enum):
    """What the trainer is doing."""

    LOADING_MODEL = "loading model"
    TOKENIZING = "tokenizing"
    COMPILING = "compiling"
    TRAINING = "training"
    EXPORTING = "exporting"


@dataclass(frozen=True)
class PhaseRecord:
    """One phase: its name, a detail (``164 rows``), and when it began (Unix time)."""

    phase: Phase
    detail: str | None
    started: float

    def describe(self) -> str:
        """``tokenizing 164 rows``."""
        return f"{self.phase.value} {self.detail}" if self.detail else self.phase.value


def write_phase(output_dir: Path, phase: Phase, detail: str | None = None) -> PhaseRecord:
    """Record that the trainer entered ``phase`` (atomic replace: readers never see half a record)."""
    record = PhaseRecord(phase, detail, time.time())
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / f".{PHASE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({**asdict(record), "phase": phase.value}), encoding="utf-8")
    os.replace(tmp, output_dir / PHASE_FILE)
    return record


def read_phase(output_dir: Path) -> PhaseRecord | None:
    """The last phase recorded in ``output_dir`` (None when there is none or it is unreadable)."""
    try:
        data = json.loads((output_dir / PHASE_FILE).read_text(encoding="utf-8"))
        return PhaseRecord(Phase(data["phase"]), data.get("detail"), float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
