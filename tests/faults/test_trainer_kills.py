"""SIGKILL a training worker, the whole job, or a checkpoint write: `resume: auto` ends where an unbroken run ends."""

from __future__ import annotations

import signal

from kubetune.backends.local.backend import job_processes, job_tag
from kubetune.client import JobStatus
from tests.faults.jobs import (
    EVERY,
    STALLING_TRAINER,
    STEPS,
    TINY_JOB,
    assert_checkpoints_intact,
    assert_same_weights,
    checkpoint_steps,
    job_workers,
    kill_tree,
    metric_steps,
    run_torchrun,
    wait_for,
    weights,
)
from tests.faults.stalling_trainer import STALL_MARKER, STALL_STEP


def test_killed_worker_is_restarted_and_the_job_completes_with_the_same_weights(
    client, tmp_path, tiny_model_dir, swap_data, reference_weights
):
    run = tmp_path / "run"
    name = client.train_from_spec(TINY_JOB.spec(tiny_model_dir, swap_data, run, max_restarts=1))
    wait_for(lambda: checkpoint_steps(run), 180, "the first checkpoint")
    victim = wait_for(lambda: job_workers(client, name)[1:], 30, "rank 1")[0]
    assert int(victim.environ()["RANK"]) == 1
    victim.send_signal(signal.SIGKILL)  # mid-step: rank 0 is in the same step's all-reduce

    job = client.wait_for_job_status(name, timeout=300, polling_interval=0.5)
    log = "\n".join(client.get_job_logs(name))
    assert job.status == JobStatus.COMPLETE
    assert "resumed from" in log, log[-3000:]
    assert metric_steps(run) == list(range(1, STEPS + 1))
    assert assert_checkpoints_intact(run)[-1] == STEPS
    assert_same_weights(weights(run), reference_weights)


def test_whole_job_killed_then_resubmitted_resumes_to_the_same_weights(
    client, tmp_path, tiny_model_dir, swap_data, reference_weights
):
    run = tmp_path / "run"
    name = client.train_from_spec(TINY_JOB.spec(tiny_model_dir, swap_data, run, name="first"))
    wait_for(lambda: checkpoint_steps(run), 180, "the first checkpoint")
    backend = client.backend
    tag = job_tag(backend.home, name, client.get_job(name).created_at)
    everything = job_processes(tag)  # supervisor, torchrun agent, both workers
    assert len(everything) >= 4
    for proc in everything:
        proc.send_signal(signal.SIGKILL)
    lost = wait_for(lambda: (j := client.get_job(name)).status.is_terminal and j, 30, "the job to be marked ended")
    assert (lost.status, lost.reason) == (JobStatus.FAILED, "SupervisorLost")
    survived = assert_checkpoints_intact(run)
    assert survived and max(survived) < STEPS

    again = client.train_from_spec(TINY_JOB.spec(tiny_model_dir, swap_data, run, name="second"))
    job = client.wait_for_job_status(again, timeout=300, polling_interval=0.5)
    assert job.status == JobStatus.COMPLETE
    assert f"step-{max(survived)}" in "\n".join(client.get_job_logs(again))
    assert metric_steps(run) == list(range(1, STEPS + 1))
    assert_same_weights(weights(run), reference_weights)


def test_kill_during_a_checkpoint_write_leaves_no_corrupt_checkpoint(
    tmp_path, tiny_model_dir, swap_data, reference_weights
):
    run = tmp_path / "run"
    spec = TINY_JOB.spec(tiny_model_dir, swap_data, run)
    checkpoints = run / "output" / "checkpoints"
    step, marker = 2 * EVERY, tmp_path / "stalled"
    # Rank 0 stops inside the second checkpoint's write (files written, none fsynced, no meta.json, not
    # renamed) and says so: the kill below lands mid-write every time, not only when a poll wins a race.
    env = {STALL_STEP: str(step), STALL_MARKER: str(marker)}
    proc = run_torchrun(spec, run, program=(str(STALLING_TRAINER),), env=env)
    wait_for(lambda: marker.exists() or proc.poll() is not None, 180, "rank 0 to stall inside a checkpoint write")
    kill_tree(proc.pid)
    output, _ = proc.communicate()
    assert marker.exists(), output
    writing = checkpoints / f".step-{step}.tmp"
    assert writing.is_dir() and not (checkpoints / f"step-{step}").exists()
    assert any(writing.iterdir()) and not (writing / "meta.json").exists()  # caught mid-write (meta.json goes last)
    assert assert_checkpoints_intact(run) == [EVERY]

    resumed = run_torchrun(spec, run)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resumed from {checkpoints / f'step-{EVERY}'} (step" in output, output
    assert assert_checkpoints_intact(run)[-1] == STEPS
    assert not list(checkpoints.glob(".step-*.tmp"))
    assert_same_weights(weights(run), reference_weights)
