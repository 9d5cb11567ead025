"""Checkpoints: a killed run resumes from its newest complete checkpoint and ends where an unbroken run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file
from synthetic_jobs import make_spec

from kubetune.trainer import checkpoint
from kubetune.trainer.checkpoint import complete_checkpoints, latest_checkpoint

STEPS = 8
TRAINING = {
    "max_steps": STEPS,
    "batch_size": 2,
    "learning_rate": 2e-3,
    "lr_scheduler": "cosine",
    "warmup_steps": 2,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
}


def _launch(spec, run_dir) -> subprocess.Popen:
    config = run_dir / "job.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune.trainer", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill_after_first_checkpoint(process: subprocess.Popen, run_dir) -> list[int]:
    """SIGKILL ``process`` as soon as its first complete checkpoint appears; the steps of the
    complete checkpoints it left."""
    checkpoints = run_dir / "output" / "checkpoints"
    deadline = time.monotonic() + 300
    while latest_checkpoint(checkpoints) is None:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    return [step for step, _ in complete_checkpoints(checkpoints)]


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "output" / "metrics.jsonl").read_text().splitlines()]


def test_sigkilled_run_resumes_and_matches_an_uninterrupted_run(tmp_path, smollm2_dir, swap_data):
    # Dropout makes the RNG state matter: resuming must restore it too.
    lora = {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"], "dropout": 0.1}
    straight_dir, broken_dir = tmp_path / "straight", tmp_path / "broken"
    straight = _launch(make_spec(smollm2_dir, swap_data, straight_dir, training=TRAINING, lora=lora), straight_dir)
    broken_spec = make_spec(smollm2_dir, swap_data, broken_dir, training=TRAINING, lora=lora)
    killed_at = kill_after_first_checkpoint(_launch(broken_spec, broken_dir), broken_dir)
    checkpoints = broken_dir / "output" / "checkpoints"
    assert killed_at and max(killed_at) < STEPS
    assert not (broken_dir / "output" / "adapter").exists()
    # A half-written checkpoint (as a crash mid-save leaves it) must never be picked.
    partial = checkpoints / f".step-{STEPS - 1}.tmp"
    partial.mkdir()
    (partial / "model.pt").write_bytes(b"truncated")

    resumed = _launch(broken_spec, broken_dir)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert f"resumed from {checkpoints / f'step-{max(killed_at)}'}" in output
    output, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, output

    expected, got = _metrics(straight_dir), _metrics(broken_dir)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in expected], rel=1e-4)
    final_a = load_file(straight_dir / "output" / "adapter" / "adapter_model.safetensors")
    final_b = load_file(broken_dir / "output" / "adapter" / "adapter_model.safetensors")
    for name, tensor in final_a.items():
        torch.testing.assert_close(final_b[name], tensor, rtol=1e-4, atol=1e-7)
    assert [step for step, _ in complete_checkpoints(checkpoints)] == [STEPS - 2, STEPS]


def test_only_complete_step_folders_count_as_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    for name, complete in (("step-2", True), ("step-10", True), ("step-12", False), (".step-14.tmp", True)):
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / "meta.json").write_text("{}")
    assert latest_checkpoint(root) == root / "step-10"
    assert latest_checkpoint(tmp_path / "none") is None


def test_a_checkpoint_being_deleted_is_never_picked_even_if_the_delete_is_killed(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    for step in (4, 8):
        (root / f"step-{step}" / "state").mkdir(parents=True)
        (root / f"step-{step}" / "state" / "shard.distcp").write_bytes(b"x" * 64)
        (root / f"step-{step}" / "meta.json").write_text("{}")

    def killed_mid_delete(path):
        raise KeyboardInterrupt(f"killed while deleting {path}")

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed_mid_delete)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.remove_checkpoint(root / "step-8")
    assert (root / "step-8" / "state" / "shard.distcp").exists()  # the kill left the files behind...
    assert latest_checkpoint(root) == root / "step-4"  # ...but the folder no longer counts as complete
