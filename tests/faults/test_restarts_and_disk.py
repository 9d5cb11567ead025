"""Bounded restarts (a crash loop ends Failed with the last error) and a disk that fills up while saving."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import pytest
import yaml

from kubetune.backends.function_worker import pack_function
from kubetune.backends.local import LocalBackend
from kubetune.client import JobStatus, TrainerClient
from kubetune.spec.base import validate_config
from kubetune.spec.job import JobSpec
from tests.faults.jobs import TINY_JOB, assert_checkpoints_intact


def crash_every_time() -> None:
    """A training function that always fails, naming its attempt."""
    import os

    raise RuntimeError(f"boom on restart {os.environ['TORCHELASTIC_RESTART_COUNT']}")


def test_crash_loop_stops_after_max_restarts_with_the_last_error(tmp_path):
    backend = LocalBackend(tmp_path / "home")
    client = TrainerClient(backend)
    # train() has no max_restarts option (yet): the job spec carries it, as `kubetune train -f` does.
    spec = JobSpec(name="loop", trainer_kind="custom", function=pack_function(crash_every_time, {}), max_restarts=2)
    started = time.monotonic()
    looping = client.train_from_spec(spec)
    job = client.wait_for_job_status(looping, status={JobStatus.FAILED}, timeout=180, polling_interval=0.5)
    assert time.monotonic() - started < 180
    assert job.reason == "TrainerFailed"
    assert job.message.startswith("node-0 exited with code 1 (after 2 restarts): "), job.message
    assert "boom on restart 0" in job.message, job.message  # torchrun counts its own restarts; ours start it anew
    restarts = [e for e in client.get_job_events(looping) if e.reason == "Restarting"]
    assert [e.message.split("(")[-1] for e in restarts] == ["1 of max_restarts 2)", "2 of max_restarts 2)"]
    log = "\n".join(client.get_job_logs(looping))
    assert log.count("RuntimeError: boom on restart 0") == 3  # the first run and exactly two restarts
    backend.delete_job(looping)


@contextlib.contextmanager
def small_tmpfs(path, size: str):
    """Mount a tmpfs of ``size`` at ``path`` (root only); skip when this machine cannot."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_while_checkpointing_is_a_clear_error_and_keeps_the_previous_checkpoint(
    tmp_path, tiny_model_dir, swap_data
):
    # One checkpoint of the tiny full fine-tune is ~37 MiB (weights, Adam moments, RNG): 60 MiB holds one, not two.
    with small_tmpfs(tmp_path / "disk", "60m") as disk:
        run = disk / "run"
        training = {**TINY_JOB.training, "max_steps": 8, "checkpoint_every": 4, "keep_checkpoints": 2}
        data = TINY_JOB.spec(tiny_model_dir, swap_data, run).model_dump(mode="json")
        data.update(procs_per_node=1)
        data["trainer"]["training"] = training
        spec = validate_config(JobSpec, data)
        config = tmp_path / "job.yaml"
        config.write_text(yaml.safe_dump(spec.model_dump(mode="json")), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "kubetune.trainer", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        error = result.stderr.strip().splitlines()[-1]
        checkpoints = run / "output" / "checkpoints"
        assert error == (
            f"error: cannot write checkpoint {checkpoints / 'step-8'}: no space left on the device "
            f"(the previous checkpoint {checkpoints / 'step-4'} is kept; free space, and the job resumes from it)"
        )
        assert assert_checkpoints_intact(run) == [4]
        assert not list(checkpoints.glob(".step-*"))  # the partial write was cleaned up
