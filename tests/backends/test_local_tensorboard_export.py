"""TensorBoard event files mirror metrics.jsonl, picking up new lines as training writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.backends.local.tensorboard_export import MetricsToTensorBoard
from kubetune.contracts.run_dir import RunDir

pytest.importorskip("tensorboard")


def test_metrics_become_tensorboard_scalars_incrementally(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    layout = RunDir(tmp_path)
    layout.output.mkdir()
    metrics = layout.metrics_file
    exporter = MetricsToTensorBoard(metrics, layout.tensorboard)
    metrics.write_text(json.dumps({"step": 1, "total_steps": 2, "loss": 2.0, "lr": 1e-3, "eta_s": None}) + "\n")
    assert exporter.export_new() == 1
    with metrics.open("a") as handle:
        handle.write(json.dumps({"step": 2, "total_steps": 2, "loss": 1.5, "lr": 5e-4, "eta_s": 0.0}) + "\n")
    assert exporter.export_new() == 1
    assert exporter.export_new() == 0
    exporter.close()

    events = EventAccumulator(str(layout.tensorboard))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("train/loss")] == [(1, 2.0), (2, 1.5)]
    assert "train/total_steps" not in events.Tags()["scalars"]
