"""Per-step training metrics: progress records in the run directory plus a human progress line.

The record (:class:`kubetune.contracts.progress.Progress`) is the contract; the printed line
is for people only and nothing parses it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

from kubetune.contracts.progress import Progress

_FIELDS = {f.name for f in dataclasses.fields(Progress)}


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class MetricsWriter:
    """Appends one progress record per logged step to ``metrics.jsonl`` (rank 0 only).

    Args:
        path: the run's ``output/metrics.jsonl``.
        total_steps: optimizer steps of the run.
        enabled: False on ranks other than 0 (records are still built and returned).
        start_step: the step a resumed run starts after (for the ETA).
        reporters: called with each record after it is written (e.g. the Kubernetes status reporter).
    """

    def __init__(
        self,
        path: Path,
        total_steps: int,
        enabled: bool = True,
        start_step: int = 0,
        reporters: tuple[Callable[[Progress], None], ...] = (),
    ):
        self.path = path
        self.total_steps = total_steps
        self.enabled = enabled
        self.start_time = time.monotonic()
        self.start_step = start_step
        self.reporters = reporters
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, step: int, **values: float | int | None) -> Progress:
        """Record ``step`` (1-based) with its values; adds elapsed time and ETA.

        Values named like a :class:`Progress` field fill it; any other name is an
        objective-specific value (``Progress.objective``).
        """
        elapsed = time.monotonic() - self.start_time
        done = step - self.start_step
        eta = elapsed / done * (self.total_steps - step) if done > 0 else None
        objective = {key: value for key, value in values.items() if key not in _FIELDS and value is not None}
        progress = Progress(
            step=step,
            total_steps=self.total_steps,
            **{key: value for key, value in values.items() if key in _FIELDS},
            elapsed_s=round(elapsed, 3),
            eta_s=None if eta is None else round(eta, 1),
            objective=objective,
        )
        record = progress.to_json()
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            for report in self.reporters:
                report(progress)
            parts = [f"step {step}/{self.total_steps}"]
            for key, fmt in (
                ("loss", ".4f"),
                ("eval_loss", ".4f"),
                ("lr", ".2e"),
                ("grad_norm", ".3f"),
                ("tokens_per_s", ".0f"),
            ):
                if record.get(key) is not None:
                    parts.append(f"{key} {record[key]:{fmt}}")
            parts.extend(f"{key} {value:.4f}" for key, value in progress.objective.items())
            if eta is not None:
                parts.append(f"eta {format_duration(eta)}")
            print(" | ".join(parts), flush=True)
        return progress

    def log_evaluation(self, step: int, scores: dict[str, float]) -> Progress:
        """Record the ``evaluation:`` scores measured after ``step`` as their own record (no loss), so
        readers carry them forward beside the training records; prints one line."""
        progress = Progress(
            step=step,
            total_steps=self.total_steps,
            elapsed_s=round(time.monotonic() - self.start_time, 3),
            evaluation=dict(scores),
        )
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(progress.to_json()) + "\n")
            for report in self.reporters:
                report(progress)
            print(
                f"evaluation after step {step}/{self.total_steps}: "
                + " | ".join(f"{name} {value:.4f}" for name, value in scores.items()),
                flush=True,
            )
        return progress

    def annotate(self, step: int, **values: float) -> None:
        """Add ``values`` (Progress fields, e.g. ``checkpoint_s``) to the record of ``step`` if it is the
        last one written; the file is replaced atomically, so a crash keeps the record as it was."""
        if not self.enabled:
            return
        records = read_metrics(self.path)
        if not records or records[-1].step != step:
            return
        records[-1] = dataclasses.replace(records[-1], **values)
        _write_records(self.path, records)


def _write_records(path: Path, records: list[Progress]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(record.to_json()) + "\n" for record in records), encoding="utf-8")
    tmp.replace(path)


def read_metrics(path: Path) -> list[Progress]:
    """The records of a ``metrics.jsonl`` file (an empty list when it does not exist)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Progress.from_json(json.loads(line)) for line in lines if line.strip()]


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop records of steps after ``after_step``: a resumed run logs them again."""
    _write_records(path, [record for record in read_metrics(path) if record.step <= after_step])


#: Objective values drawn in ``loss.png``'s second panel (rewards, left axis) when a run has them.
REWARD_CURVES = ("chosen_reward", "rejected_reward", "reward_margin", "kl")
#: Drawn on the second panel's right axis (a share of pairs, 0 to 1).
ACCURACY_CURVE = "reward_accuracy"


def plot_losses(metrics_path: Path, image_path: Path) -> Path | None:
    """Draw training (and eval) loss per step from ``metrics.jsonl`` into a PNG (``loss.png``).

    A run whose records carry rewards (the preference objectives) gets a second panel below:
    the chosen and rejected rewards, their margin (and KTO's KL reference point), with the
    reward accuracy on its right axis.
    """
    records = read_metrics(metrics_path)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [name for name in (*REWARD_CURVES, ACCURACY_CURVE) if any(name in r.objective for r in records)]
    fig, axes = plt.subplots(2 if curves else 1, 1, figsize=(7, 7 if curves else 4), dpi=100, squeeze=False)
    ax = axes[0][0]
    trained = [r for r in records if r.loss is not None]
    ax.plot([r.step for r in trained], [r.loss for r in trained], label="train loss")
    evals = [r for r in records if r.eval_loss is not None]
    if evals:
        ax.plot([r.step for r in evals], [r.eval_loss for r in evals], "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if curves:
        rewards = axes[1][0]
        accuracy = rewards.twinx() if ACCURACY_CURVE in curves else None
        for name in curves:
            points = [(r.step, r.objective[name]) for r in records if r.objective.get(name) is not None]
            target, style = (accuracy, "k:") if name == ACCURACY_CURVE else (rewards, "-")
            target.plot([step for step, _ in points], [value for _, value in points], style, label=name)
        rewards.set_xlabel("step")
        rewards.set_ylabel("reward")
        rewards.axhline(0, color="grey", linewidth=0.5)
        rewards.grid(alpha=0.3)
        handles, labels = rewards.get_legend_handles_labels()
        if accuracy is not None:
            accuracy.set_ylabel("reward accuracy")
            accuracy.set_ylim(-0.05, 1.05)
            more_handles, more_labels = accuracy.get_legend_handles_labels()
            handles, labels = handles + more_handles, labels + more_labels
        rewards.legend(handles, labels, fontsize="small")
    fig.tight_layout()
    fig.savefig(image_path)
    plt.close(fig)
    return image_path
