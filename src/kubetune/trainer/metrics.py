"""Per-step training metrics: JSON lines in the run directory plus a human progress line."""

from __future__ import annotations

import json
import time
from pathlib import Path


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class MetricsWriter:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (rank 0 only)."""

    def __init__(self, path: Path, total_steps: int, enabled: bool = True, start_step: int = 0):
        self.path = path
        self.total_steps = total_steps
        self.enabled = enabled
        self.start_time = time.monotonic()
        self.start_step = start_step
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, step: int, **values: float) -> dict:
        """Record ``step`` (1-based) with its values; adds elapsed time and ETA."""
        elapsed = time.monotonic() - self.start_time
        done = step - self.start_step
        eta = elapsed / done * (self.total_steps - step) if done > 0 else None
        record = {"step": step, "total_steps": self.total_steps, **values, "elapsed_s": round(elapsed, 3)}
        record["eta_s"] = None if eta is None else round(eta, 1)
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            parts = [f"step {step}/{self.total_steps}"]
            for key, fmt in (
                ("loss", ".4f"),
                ("eval_loss", ".4f"),
                ("lr", ".2e"),
                ("grad_norm", ".3f"),
                ("tokens_per_s", ".0f"),
                ("checkpoint_s", ".1f"),
            ):
                if record.get(key) is not None:
                    parts.append(f"{key} {record[key]:{fmt}}")
            if eta is not None:
                parts.append(f"eta {format_duration(eta)}")
            print(" | ".join(parts), flush=True)
        return record


def read_metrics(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (an empty list when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop records of steps after ``after_step``: a resumed run logs them again."""
    kept = [record for record in read_metrics(path) if record["step"] <= after_step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")
    tmp.replace(path)


def plot_losses(metrics_path: Path, image_path: Path) -> Path | None:
    """Draw training (and eval) loss per step from ``metrics.jsonl`` into a PNG."""
    records = read_metrics(metrics_path)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], label="train loss")
    evals = [r for r in records if r.get("eval_loss") is not None]
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(image_path)
    plt.close(fig)
    return image_path
