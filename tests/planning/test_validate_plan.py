"""``kubetune validate`` prints the memory plan, and refuses a plan that cannot fit, before any model loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml


def validate(tmp_path: Path, job: dict, *options: str) -> subprocess.CompletedProcess:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "validate", "-f", str(path), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )


def alpaca_file(tmp_path: Path) -> str:
    """A small valid alpaca dataset (validate checks the data before it plans)."""
    path = tmp_path / "train.jsonl"
    rows = [{"instruction": f"Say {i}.", "output": f"{i}"} for i in range(8)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_validate_prints_the_plan_of_a_local_model(tmp_path, smollm2_dir):
    trainer = {"model": {"path": str(smollm2_dir)}, "dataset": {"path": alpaca_file(tmp_path)}}
    job = {"trainer": {**trainer, "training": {"batch_size": 4}}}
    result = validate(tmp_path, job)
    assert result.returncode == 0, result.stderr
    assert "plan per GPU (79 GiB, 1 process(es), up to 4096 tokens per micro-batch)" in result.stdout
    assert "precision bf16, packing on, chunked loss on, fused LoRA on, compile per layer" in result.stdout
    for component in ("weights", "activations", "logits", "peak"):
        assert component in result.stdout


def test_validate_checks_a_catalog_runtimes_scale_against_this_machine(tmp_path):
    # validate runs the local backend's pre-launch checks: the runtime's 8 GPUs per node are checked
    # here (its plan per GPU is tested in tests/runtimes/test_blueprint_plans.py).
    job = {"runtime": "llama3.3-70b-lora", "trainer": {"dataset": {"path": alpaca_file(tmp_path)}}}
    result = validate(tmp_path, job)
    assert result.returncode == 2
    assert "resources.gpu: 8 GPUs per node requested, this machine has 0" in result.stderr


def test_validate_refuses_a_plan_that_cannot_fit_in_one_line(tmp_path, smollm2_dir):
    job = {
        "trainer": {
            "model": {"path": str(smollm2_dir)},
            "dataset": {"path": alpaca_file(tmp_path)},
            "method": "full",
            "training": {"batch_size": 64, "max_seq_len": 8192, "gradient_checkpointing": False},
        }
    }
    result = validate(tmp_path, job, "--gpu-memory", "24")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "memory plan: full needs" in lines[0] and "more than the 24 GiB" in lines[0]
    assert "gradient_checkpointing: true" in lines[0]


def test_validate_skips_the_plan_without_the_models_sizes(tmp_path):
    job = {"initializer": {"model": "hf://org/model"}, "trainer": {"dataset": {"path": alpaca_file(tmp_path)}}}
    result = validate(tmp_path, job)
    assert result.returncode == 0, result.stderr
    assert "plan: skipped" in result.stdout
