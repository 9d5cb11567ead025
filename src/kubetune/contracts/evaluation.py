"""The evaluation record: what scoring a model on a held-out file found.

One typed record with one JSON form (:meth:`EvalReport.to_json` / :meth:`EvalReport.from_json`):
``kubetune eval --json-out`` writes it, ``TrainerClient.evaluate`` returns it, and the trainer's
``evaluation:`` section puts its scores into a progress record of ``output/metrics.jsonl``
(:attr:`kubetune.contracts.progress.Progress.evaluation`), which the backends and the CLI read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Metrics of generated answers against the reference answer, 0..1 (mean over rows).
GENERATION_METRICS = ("exact_match", "first_word", "contains", "rouge_l")
#: Metrics of a classifier's predicted class against the label, 0..1.
CLASSIFICATION_METRICS = ("accuracy", "f1")
#: Every metric name, in display order.
METRICS = GENERATION_METRICS + CLASSIFICATION_METRICS


@dataclass(frozen=True)
class EvalSample:
    """One scored row: where it came from, the prompt, the reference and what the model answered."""

    place: str
    prompt: str
    reference: str
    prediction: str


@dataclass(frozen=True)
class EvalReport:
    """The scores of one model on one held-out file.

    Attributes:
        model: what was scored (a job name, a folder, ``adapter on base``).
        file: the held-out file.
        rows: how many rows were scored.
        metrics: score per metric name (:data:`METRICS`), 0..1.
        step: the training step it was measured after (None outside training).
        samples: every row's prompt, reference and prediction, in file order.
    """

    model: str
    file: str
    rows: int
    metrics: dict[str, float]
    step: int | None = None
    samples: list[EvalSample] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON object (samples as objects)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> EvalReport:
        """Read :meth:`to_json`'s form."""
        return cls(
            model=str(record["model"]),
            file=str(record["file"]),
            rows=int(record["rows"]),
            metrics={str(name): float(value) for name, value in dict(record["metrics"]).items()},
            step=record.get("step"),
            samples=[EvalSample(**sample) for sample in record.get("samples") or []],
        )


@dataclass(frozen=True)
class EvalComparison:
    """A base model and a fine-tuned one scored on the same file (``kubetune eval --compare``)."""

    base: EvalReport
    tuned: EvalReport

    @property
    def delta(self) -> dict[str, float]:
        """Fine-tuned minus base, per metric both have."""
        return {
            name: round(value - self.base.metrics[name], 4)
            for name, value in self.tuned.metrics.items()
            if name in self.base.metrics
        }

    def to_json(self) -> dict[str, Any]:
        """``{"base": report, "tuned": report, "delta": {metric: tuned - base}}``."""
        return {"base": self.base.to_json(), "tuned": self.tuned.to_json(), "delta": self.delta}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> EvalComparison:
        """Read :meth:`to_json`'s form."""
        return cls(EvalReport.from_json(record["base"]), EvalReport.from_json(record["tuned"]))
