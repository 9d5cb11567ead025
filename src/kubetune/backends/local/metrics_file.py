"""Reading the trainer's ``output/metrics.jsonl`` while it is being written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kubetune.client.types import Progress

METRICS_FILE = "metrics.jsonl"
_TAIL_BYTES = 8192


def complete_records(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Whole JSON lines from byte ``offset`` on, and the offset after the last whole line."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return records, offset + end


def iter_tail_lines(path: Path) -> Iterator[bytes]:
    """The whole lines of the last few kilobytes of ``path``, last line first."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        data = handle.read()
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    if size > _TAIL_BYTES:
        lines = lines[1:]  # the first line may be cut
    return reversed(lines)


def read_progress(output_dir: Path) -> Progress | None:
    """Progress from the last training step logged in ``output_dir/metrics.jsonl`` (None before step 1)."""
    path = output_dir / METRICS_FILE
    if not path.exists():
        return None
    last_eval = None
    for line in iter_tail_lines(path):
        record = json.loads(line)
        if record.get("loss") is None:
            last_eval = last_eval if last_eval is not None else record.get("eval_loss")
            continue
        return Progress(
            step=int(record["step"]),
            total_steps=int(record["total_steps"]),
            loss=record.get("loss"),
            eval_loss=record.get("eval_loss", last_eval),
            tokens_per_s=record.get("tokens_per_s"),
            elapsed_s=record.get("elapsed_s"),
            eta_s=record.get("eta_s"),
        )
    return None
