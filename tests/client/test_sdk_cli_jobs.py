"""The job commands: `kubetune train -f` submits to the local backend and follows; jobs/logs/wait/delete."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


def kubetune(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, against the data directory ``home``."""
    env = {**os.environ, "KUBETUNE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _job_file(tmp_path: Path, name: str, model: Path, dataset: Path, **training) -> Path:
    spec = {
        "name": name,
        "trainer": {
            "model": {"path": str(model)},
            "dataset": {"path": str(dataset)},
            "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 2, "batch_size": 1, "max_seq_len": 48, **training},
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_train_follows_the_job_and_prints_output_locations(tmp_path: Path, smollm2_dir: Path, tiny_alpaca: Path):
    home = tmp_path / "home"
    job_file = _job_file(tmp_path, "cli-lora", smollm2_dir, tiny_alpaca)

    result = kubetune(home, "train", "-f", str(job_file))

    assert result.returncode == 0, result.stdout + result.stderr
    output = home / "runs" / "cli-lora" / "output"
    assert f"done in 2 steps; outputs in {output}" in result.stdout
    assert f"adapter:    {output / 'adapter'}" in result.stdout
    assert f"merged:     {output / 'merged'}" in result.stdout
    assert (output / "merged" / "config.json").is_file()
    node_log = (home / "logs" / "cli-lora" / "node-0.log").read_text()
    assert "\r" not in node_log  # no progress bars redrawn into the log file
    assert "step 2/2" in node_log

    listing = kubetune(home, "jobs")
    assert "cli-lora" in listing.stdout and "Complete" in listing.stdout and "2/2" in listing.stdout


def test_detached_failing_job_is_explained_by_wait_jobs_and_logs_then_deleted(
    tmp_path: Path, smollm2_dir: Path, tiny_alpaca: Path
):
    home = tmp_path / "home"
    # A model folder that passes the pre-launch checks (config and tokenizer read fine) but has
    # no weights, so the job fails in the trainer, after it started.
    broken = tmp_path / "broken-model"
    shutil.copytree(smollm2_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    job_file = _job_file(tmp_path, "cli-bad-data", broken, tiny_alpaca)

    submitted = kubetune(home, "train", "-f", str(job_file), "--detach")
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted cli-bad-data" in submitted.stdout

    waited = kubetune(home, "wait", "cli-bad-data")
    assert waited.returncode == 1
    assert "Failed (TrainerFailed): node-0 exited with code" in " ".join(waited.stderr.split())
    assert "broken-model" in waited.stderr  # the trainer's own error names the model folder

    assert "TrainerFailed" in kubetune(home, "jobs").stdout
    assert "error:" in kubetune(home, "logs", "cli-bad-data", "--step", "node-0").stdout

    # a job that failed before its first step is replaced without ceremony
    again = kubetune(home, "train", "-f", str(job_file), "--detach")
    assert again.returncode == 0, again.stderr
    assert kubetune(home, "wait", "cli-bad-data").returncode == 1

    assert kubetune(home, "delete", "cli-bad-data").returncode == 0
    missing = kubetune(home, "logs", "cli-bad-data")
    assert missing.returncode == 2 and "no job named 'cli-bad-data'" in missing.stderr
