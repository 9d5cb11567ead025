"""The job's ``evaluation:`` section during training: the held-out rows read once, scored at the end
of training (and every ``every_n_steps`` steps) with the rows split over the job's ranks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kubetune.contracts.run_dir import RunDir
from kubetune.spec.evaluation import EvaluationConfig
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.distributed import DistributedContext, unwrap_model
from kubetune.trainer.evaluation.prompts import EvalSet, build_eval_set
from kubetune.trainer.evaluation.scoring import score_model
from kubetune.trainer.metrics import MetricsWriter
from kubetune.trainer.model_files import resolve_local


@dataclass
class TrainingEvaluation:
    """Scores the model being trained on the held-out file; rank 0 records the scores.

    The scores go into ``metrics.jsonl`` as an evaluation record
    (:attr:`~kubetune.contracts.progress.Progress.evaluation`) and the whole report, every row,
    into ``output/evaluation.json``.
    """

    config: EvaluationConfig
    eval_set: EvalSet
    tokenizer: object
    label: str
    ctx: DistributedContext
    layout: RunDir
    last_step: int | None = None

    @classmethod
    def prepare(
        cls,
        config: LLMConfig,
        tokenizer,
        label_names: list[str] | None,
        label: str,
        ctx: DistributedContext,
        layout: RunDir,
    ) -> TrainingEvaluation:
        """Read and render the held-out rows (every rank, before the model loads).

        Raises:
            DataError: naming the held-out file (and row, column) when it cannot be scored.
        """
        evaluation = config.evaluation
        path = resolve_local(evaluation.file, Path(), "trainer.evaluation.file")
        eval_set = build_eval_set(evaluation, config.dataset, path, tokenizer, label_names)
        return cls(evaluation, eval_set, tokenizer, label, ctx, layout)

    def due(self, step: int, total_steps: int) -> bool:
        """Whether ``every_n_steps`` asks for an evaluation after ``step`` (the last step always has one)."""
        every = self.config.every_n_steps
        return every is not None and step % every == 0 and step < total_steps

    def done_at(self, step: int) -> bool:
        """Whether the model was already evaluated after ``step``."""
        return self.last_step == step

    def run(self, model, step: int, metrics: MetricsWriter) -> dict[str, float]:
        """Score the model after ``step`` (every rank takes part) and record the scores (rank 0)."""
        inner = unwrap_model(model)
        report = score_model(
            inner,
            self.tokenizer,
            self.eval_set,
            self.config.max_new_tokens,
            self.config.batch_size,
            self.label,
            step=step,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
        )
        self.last_step = step
        if self.ctx.is_main:
            metrics.log_evaluation(step, report.metrics)
            path = self.layout.evaluation_report
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
            tmp.replace(path)
        return report.metrics
