"""The ``evaluation:`` section of the LLM Trainer: score the model on a held-out file by generation.

Torch-free, like all of ``spec``: validated when the job is built. The trainer runs it at the end
of training (and every ``every_n_steps`` steps); ``kubetune eval`` takes the same settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubetune.contracts.evaluation import CLASSIFICATION_METRICS, GENERATION_METRICS
from kubetune.spec.base import StrictModel

Metric = Literal["exact_match", "first_word", "contains", "rouge_l", "accuracy", "f1"]
#: Dataset formats whose rows hold a prompt and a reference answer to generate.
GENERATION_FORMATS = ("alpaca", "completion", "messages", "preference")
#: Dataset formats scored by a classifier's predicted class.
CLASSIFICATION_FORMATS = ("classification",)


def default_metrics(data_format: str) -> list[str]:
    """The metrics a format is scored with when ``metrics`` is left out."""
    return list(CLASSIFICATION_METRICS if data_format in CLASSIFICATION_FORMATS else GENERATION_METRICS)


def check_metrics(data_format: str, metrics: list[str] | None) -> None:
    """Refuse a format that cannot be scored, or metrics that do not fit it.

    Raises:
        ValueError: naming the format or the metric (pydantic turns it into the field's error).
    """
    if data_format not in GENERATION_FORMATS + CLASSIFICATION_FORMATS:
        raise ValueError(
            f"format {data_format!r} has no reference answer to score; evaluation reads "
            f"{', '.join(GENERATION_FORMATS + CLASSIFICATION_FORMATS)}"
        )
    allowed = default_metrics(data_format)
    wrong = [metric for metric in metrics or () if metric not in allowed]
    if wrong:
        raise ValueError(f"metric(s) {', '.join(wrong)} do not apply to format {data_format!r} (use {allowed})")


class EvaluationConfig(StrictModel):
    """Score the model on a held-out file in one of the trainer's dataset formats.

    Generation formats (``alpaca``, ``completion``, ``messages``: the last assistant turn is the
    reference; ``preference``: ``chosen`` is) are answered by greedy generation of the prompt
    rendered exactly as in training (the same prompt template or chat template) and scored with
    exact match, first-word match, contains and ROUGE-L; ``classification`` rows by the
    classifier's predicted class (accuracy, macro F1). The file is read with the training
    dataset's ``column_map``, ``preprocess`` and ``labels``.
    """

    file: str = Field(description="Held-out file or folder (json, jsonl, csv, parquet; .gz allowed) or pkg:// URI.")
    format: Literal["alpaca", "messages", "completion", "preference", "classification"] | None = Field(
        default=None, description="The file's format (default: dataset.format)."
    )
    metrics: list[Metric] | None = Field(
        default=None, min_length=1, description="Metrics to report (default: every metric of the format)."
    )
    max_new_tokens: int = Field(default=32, ge=1, le=4096, description="Tokens generated per answer at most.")
    batch_size: int = Field(default=8, ge=1, description="Prompts generated together (left-padded).")
    max_samples: int | None = Field(default=None, ge=1, description="Score only the first N rows.")
    every_n_steps: int | None = Field(
        default=None, ge=1, description="Also evaluate every N optimizer steps (default: at the end only)."
    )
