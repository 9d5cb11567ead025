"""Progress comes from the last complete training line of metrics.jsonl, even mid-write."""

from __future__ import annotations

import json
from pathlib import Path

from kubetune.backends.local.metrics_file import complete_records, read_progress
from kubetune.contracts.run_dir import RunDir


def _line(**record) -> str:
    return json.dumps(record) + "\n"


def test_progress_is_the_last_complete_training_step(tmp_path: Path):
    path = RunDir(tmp_path).metrics_file
    path.parent.mkdir()
    path.write_text(
        _line(step=1, total_steps=10, loss=2.5, tokens_per_s=100.0, elapsed_s=1.0, eta_s=9.0)
        + _line(step=2, total_steps=10, loss=2.0, tokens_per_s=120.0, elapsed_s=2.0, eta_s=8.0)
        + _line(step=2, total_steps=10, eval_loss=2.2)
        + '{"step": 3, "total_st'  # being written right now
    )
    progress = read_progress(path)
    assert (progress.step, progress.total_steps, progress.loss, progress.eta_s) == (2, 10, 2.0, 8.0)
    assert progress.eval_loss == 2.2
    assert progress.fraction == 0.2


def test_a_step_without_eval_shows_the_last_eval_loss(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        _line(step=5, total_steps=10, loss=2.0, eval_loss=2.4)
        + _line(step=6, total_steps=10, loss=1.9, eval_loss=None)
        + _line(step=7, total_steps=10, loss=1.8, eval_loss=None)
    )
    progress = read_progress(path)
    assert (progress.step, progress.loss, progress.eval_loss) == (7, 1.8, 2.4)


def test_no_metrics_yet_means_no_progress(tmp_path: Path):
    assert read_progress(RunDir(tmp_path).metrics_file) is None


def test_incremental_reading_returns_each_record_once(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line(step=1, total_steps=2, loss=1.0) + '{"step": 2')
    first, offset = complete_records(path)
    with path.open("a") as handle:
        handle.write(', "total_steps": 2, "loss": 0.5}\n')
    second, _ = complete_records(path, offset)
    assert [r["step"] for r in first] == [1] and [r["step"] for r in second] == [2]
