"""SIGKILL a training worker, the whole job, or a checkpoint write: `resume: auto` ends where an unbroken run ends."""

from __future__ import annotations

import signal

from kubetune.backends.local.backend import job_processes, job_tag
from kubetune.client import JobStatus
from tests.faults.jobs import (
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
    proc = run_torchrun(spec, run)
    # The second checkpoint's temporary folder appears: the writer is mid-write. Kill everything.
    writing = wait_for(
        lambda: checkpoint_steps(run) and [p for p in checkpoints.glob(".step-*.tmp") if p.is_dir()],
        180,
        "a checkpoint being written",
        poll=0.001,
    )[0]
    kill_tree(proc.pid)
    proc.wait()
    step = int(writing.name.removeprefix(".step-").removesuffix(".tmp"))
    assert writing.is_dir() and not (checkpoints / f"step-{step}").exists(), "the kill missed the write window"
    survived = assert_checkpoints_intact(run)
    assert survived and max(survived) < step

    resumed = run_torchrun(spec, run)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resumed from {checkpoints / f'step-{max(survived)}'} (step" in output, output
    assert assert_checkpoints_intact(run)[-1] == STEPS
    assert not list(checkpoints.glob(".step-*.tmp"))
    assert_same_weights(weights(run), reference_weights)
