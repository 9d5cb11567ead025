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
            ):
                if record.get(key) is not None:
                    parts.append(f"{key} {record[key]:{fmt}}")
            if eta is not None:
                parts.append(f"eta {format_duration(eta)}")
            print(" | ".join(parts), flush=True)
        return record
