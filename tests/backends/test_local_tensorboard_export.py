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


def test_a_checkpoint_annotating_the_last_record_does_not_break_the_export(tmp_path: Path):
    # The trainer rewrites metrics.jsonl (atomically, a new file) to add checkpoint_s to the last
    # record: the exporter must not read the new file from the old offset (mid-line, JSON error).
    from kubetune.trainer.metrics import MetricsWriter

    layout = RunDir(tmp_path)
    writer = MetricsWriter(layout.metrics_file, total_steps=4)
    exporter = MetricsToTensorBoard(layout.metrics_file, layout.tensorboard)
    writer.log(1, loss=2.0)
    writer.log(2, loss=1.5)
    assert exporter.export_new() == 2
    writer.annotate(2, checkpoint_s=0.25)
    writer.log(3, loss=1.2)
    assert exporter.export_new() == 1  # step 3 only; steps 1-2 were written already
    writer.log(4, loss=1.0)
    assert exporter.export_new() == 1
    exporter.close()
