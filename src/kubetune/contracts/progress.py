"""The training progress record: what trainer rank 0 reports after each logged step; and the
phase record (:class:`PhaseRecord`): what it is doing before its first step and after its last.

One typed record with one JSON form (:meth:`Progress.to_json` / :meth:`Progress.from_json`).
The trainer appends it to ``output/metrics.jsonl`` and, on Kubernetes, reports it to the
TrainJob's ``status.trainingProgress``; the local backend, the Kubernetes backend, the CLI and
the loss plot read it back through the same class. No value is ever parsed out of log text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from kubetune.contracts.run_dir import PHASE_FILE_NAME

OBJECTIVE_KEY = "objective"
#: The key of the evaluation scores in a record's JSON form (present only when the step evaluated).
EVALUATION_KEY = "evaluation"


@dataclass(frozen=True)
class Progress:
    """Training progress at one logged step.

    Attributes:
        step: optimizer steps done (1-based).
        total_steps: optimizer steps of the whole run.
        loss: mean training loss per target token of this step (None on an eval-only record).
        eval_loss: eval loss, on the steps that evaluate (readers carry the last one forward).
        lr: learning rate used by this step.
        grad_norm: gradient norm before clipping.
        tokens_per_s: real (non-padding) tokens per second of this step, all ranks.
        real_tokens: real tokens of this step, all ranks.
        padded_tokens: tokens including padding, all ranks.
        epoch: the epoch the data stream is in.
        elapsed_s: seconds since this run (or resumed run) started.
        eta_s: estimated seconds left.
        checkpoint_s: seconds spent writing the checkpoint taken after this step (None: no checkpoint).
        gpu_peak_gib: peak GPU memory allocated so far on rank 0 (GiB; None off CUDA), to compare
            with the memory plan the trainer logged.
        objective: objective-specific values (reward margins, KL...), by name.
        evaluation: the scores of the job's ``evaluation:`` section measured after this step (metric
            name -> 0..1, see :mod:`kubetune.contracts.evaluation`); readers carry the last one forward.
    """

    step: int
    total_steps: int
    loss: float | None = None
    eval_loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    real_tokens: int | None = None
    padded_tokens: int | None = None
    epoch: int | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    checkpoint_s: float | None = None
    gpu_peak_gib: float | None = None
    objective: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Completed share of the steps, 0..1."""
        return self.step / self.total_steps if self.total_steps else 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON object: every field by name (None as null); ``objective`` and ``evaluation`` only
        when not empty."""
        mappings = (OBJECTIVE_KEY, EVALUATION_KEY)
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in mappings}
        for key in mappings:
            if getattr(self, key):
                record[key] = dict(getattr(self, key))
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Progress:
        """Read :meth:`to_json`'s form; keys it does not know (from a newer writer) are ignored.

        Raises:
            KeyError: ``step`` or ``total_steps`` is missing.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        values["step"] = int(record["step"])
        values["total_steps"] = int(record["total_steps"])
        for key in (OBJECTIVE_KEY, EVALUATION_KEY):
            values[key] = dict(record.get(key) or {})
        return cls(**values)

    def with_eval_loss(self, eval_loss: float | None, evaluation: Mapping[str, float] | None = None) -> Progress:
        """This record with ``eval_loss`` (and ``evaluation``) filled in when it has none (the last so far)."""
        changes: dict[str, Any] = {}
        if self.eval_loss is None and eval_loss is not None:
            changes["eval_loss"] = eval_loss
        if not self.evaluation and evaluation:
            changes[EVALUATION_KEY] = dict(evaluation)
        return dataclasses.replace(self, **changes) if changes else self


def latest_progress(newest_first: Iterable[Mapping[str, Any]]) -> Progress | None:
    """The newest training record among JSON records given newest first, with the latest eval loss.

    A step that did not evaluate shows the eval loss and evaluation scores of the last one that
    did (as far back as the records go); records without ``loss`` (eval only) contribute theirs.
    None before step 1.
    """
    newest = last_eval = last_scores = None
    for record in newest_first:
        if last_eval is None and record.get("eval_loss") is not None:
            last_eval = record["eval_loss"]
        if last_scores is None and record.get(EVALUATION_KEY):
            last_scores = record[EVALUATION_KEY]
        if newest is None and record.get("loss") is not None:
            newest = Progress.from_json(record)
        if newest is not None and last_eval is not None and last_scores is not None:
            break
    return None if newest is None else newest.with_eval_loss(last_eval, last_scores)


# The phase record: rank 0 of the trainer replaces ``<run>/output/phase.json`` (atomically) as it
# moves through loading the model, tokenizing, compiling, training and exporting; the local backend
# reads it into ``Job.phase``, so ``kubetune train``/``wait`` show it instead of ``0/?``.


class Phase(str, Enum):
    """What the trainer is doing."""

    LOADING_MODEL = "loading model"
    TOKENIZING = "tokenizing"
    COMPILING = "compiling"
    TRAINING = "training"
    EVALUATING = "evaluating"
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
    tmp = output_dir / f".{PHASE_FILE_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({**asdict(record), "phase": phase.value}), encoding="utf-8")
    os.replace(tmp, output_dir / PHASE_FILE_NAME)
    return record


def read_phase(output_dir: Path) -> PhaseRecord | None:
    """The last phase recorded in ``output_dir`` (None when there is none or it is unreadable)."""
    try:
        data = json.loads((output_dir / PHASE_FILE_NAME).read_text(encoding="utf-8"))
        return PhaseRecord(Phase(data["phase"]), data.get("detail"), float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
