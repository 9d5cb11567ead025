"""Reading the trainer's ``output/metrics.jsonl`` while it is being written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kubetune.contracts.progress import Progress, latest_progress

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


def read_progress(metrics_file: Path) -> Progress | None:
    """Progress from the last training step logged in ``metrics_file`` (None before step 1)."""
    if not metrics_file.exists():
        return None
    return latest_progress(json.loads(line) for line in iter_tail_lines(metrics_file))


def read_all_progress(metrics_file: Path) -> list[Progress]:
    """Every whole record of ``metrics_file`` in order (eval-only records included); empty before step 1."""
    records, _ = complete_records(metrics_file)
    return [Progress.from_json(record) for record in records]
