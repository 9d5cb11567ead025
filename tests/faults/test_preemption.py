"""Preemption: SIGTERM on a rank or mid-write, suspend/resume, a lost supervisor, time-based checkpoints.

Every job here is the fault suite's tiny 2-process full fine-tune; where it resumes, its losses and
weights must equal the uninterrupted reference run's, and every step must be trained exactly once.
"""

from __future__ import annotations

import itertools
import os
import signal
import time

from kubetune.backends.local.backend import job_processes, job_tag
from kubetune.client import JobStatus
from kubetune.errors import PREEMPTED_EXIT_CODE
from tests.client.test_sdk_cli_jobs import kubetune
from tests.faults.jobs import (
    STEPS,
    TINY_JOB,
    FaultJob,
    assert_checkpoints_intact,
    assert_same_losses,
    assert_same_weights,
    checkpoint_steps,
    job_workers,
    kill_tree,
    launcher_workers,
    metric_records,
    metric_steps,
    run_torchrun,
    trained_steps,
    wait_for,
    weights,
)

# Kubernetes' default terminationGracePeriodSeconds: the checkpoint must be complete before it ends.
GRACE_S = 30.0


def _log(client, name: str) -> str:
    return "\n".join(client.get_job_logs(name))


def test_sigterm_to_one_rank_checkpoints_ends_preempted_and_resumes_exactly(
    client, tmp_path, tiny_model_dir, swap_data, reference_run
):
    run = tmp_path / "run"
    name = client.train_from_spec(TINY_JOB.spec(tiny_model_dir, swap_data, run, max_restarts=2))
    wait_for(lambda: checkpoint_steps(run), 180, "the first checkpoint")
    rank1 = wait_for(lambda: job_workers(client, name)[1:], 30, "rank 1")[0]
    sent = time.time()
    rank1.send_signal(signal.SIGTERM)  # rank 0 is not told: the ranks agree at the step's end

    job = client.wait_for_job_status(name, {JobStatus.SUSPENDED}, timeout=GRACE_S, polling_interval=0.2)
    assert job.reason == "Preempted", job.message
    assert f"exit code {PREEMPTED_EXIT_CODE}" in job.message
    assert not [e for e in client.get_job_events(name) if e.reason == "Restarting"]  # max_restarts untouched
    stopped_at = assert_checkpoints_intact(run)[-1]
    checkpoint = run / "output" / "checkpoints" / f"step-{stopped_at}"
    assert (checkpoint / "meta.json").stat().st_mtime - sent < GRACE_S
    assert stopped_at < STEPS
    assert metric_steps(run)[-1] == stopped_at  # no step trained after the checkpoint

    client.resume_job(name)
    job = client.wait_for_job_status(name, timeout=300, polling_interval=0.5)
    assert job.status == JobStatus.COMPLETE
    log = _log(client, name)
    assert f"resumed from {checkpoint} (step {stopped_at} of {STEPS})" in log
    assert trained_steps(log) == list(range(1, STEPS + 1))  # each step once: none twice, none skipped
    assert_same_losses(run, reference_run)
    assert_same_weights(weights(run), weights(reference_run))


def test_sigterm_during_a_checkpoint_write_and_again_while_saving_keeps_checkpoints_whole(
    tmp_path, tiny_model_dir, swap_data, reference_weights
):
    run = tmp_path / "run"
    spec = TINY_JOB.spec(tiny_model_dir, swap_data, run)
    checkpoints = run / "output" / "checkpoints"
    proc = run_torchrun(spec, run)
    writing = wait_for(
        lambda: checkpoint_steps(run) and [p for p in checkpoints.glob(".step-*.tmp") if p.is_dir()],
        180,
        "a checkpoint being written",
        poll=0.001,
    )[0]
    rank0 = launcher_workers(proc.pid)[0]  # the rank that writes the shared files
    rank0.send_signal(signal.SIGTERM)
    during_write = writing.exists()
    rank0.send_signal(signal.SIGTERM)  # a second SIGTERM while saving
    output, _ = proc.communicate(timeout=GRACE_S)
    assert proc.returncode == PREEMPTED_EXIT_CODE, output[-3000:]

    step = int(writing.name.removeprefix(".step-").removesuffix(".tmp"))
    stopped_at = assert_checkpoints_intact(run)[-1]
    assert not list(checkpoints.glob(".step-*"))  # no temporary folder left behind
    assert metric_steps(run)[-1] == stopped_at
    # Signalled mid-write, the ranks stop right after that checkpoint instead of training another step.
    assert stopped_at == step or not during_write, output[-3000:]

    resumed = run_torchrun(spec, run)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output[-3000:]
    assert f"resumed from {checkpoints / f'step-{stopped_at}'}" in output
    assert_same_weights(weights(run), reference_weights)


def test_suspend_and_resume_through_the_sdk_continue_from_the_checkpoint(
    client, tmp_path, tiny_model_dir, swap_data, reference_run
):
    run = tmp_path / "run"
    name = client.train_from_spec(TINY_JOB.spec(tiny_model_dir, swap_data, run, name="pausable"))
    wait_for(lambda: len(metric_steps(run)) >= 2, 180, "training to start")
    job = client.suspend_job(name, timeout=GRACE_S)
    assert (job.status, job.reason) == (JobStatus.SUSPENDED, "Suspended")
    # The launcher forwarded the supervisor's SIGTERM and kept the workers' status.
    assert [(s.name, s.exit_code) for s in job.steps] == [("node-0", PREEMPTED_EXIT_CODE)], job.message
    tag = job_tag(client.backend.home, name, job.created_at)
    wait_for(lambda: not job_processes(tag), 15, "every process of the job to exit")
    first = assert_checkpoints_intact(run)[-1]
    assert metric_steps(run)[-1] == first < STEPS
    assert client.suspend_job(name).status == JobStatus.SUSPENDED  # idempotent

    client.resume_job(name)
    job = client.wait_for_job_status(name, timeout=300, polling_interval=0.5)
    log = _log(client, name)
    assert f"(step {first} of {STEPS})" in log
    assert trained_steps(log) == list(range(1, STEPS + 1))
    assert_same_losses(run, reference_run)
    assert_same_weights(weights(run), weights(reference_run))


def test_suspend_and_resume_through_the_cli(client, tmp_path, tiny_model_dir, swap_data):
    steps = 60  # long enough that the CLI's own start-up does not race the end of training
    job = FaultJob(training={**TINY_JOB.training, "max_steps": steps})
    run = tmp_path / "run"
    home = client.backend.home
    name = client.train_from_spec(job.spec(tiny_model_dir, swap_data, run, name="cli-pausable"))
    wait_for(lambda: len(metric_steps(run)) >= 2, 180, "training to start")

    suspended = kubetune(home, "suspend", name, timeout=120)
    assert suspended.returncode == 0, suspended.stdout + suspended.stderr
    assert client.get_job(name).steps[0].exit_code == PREEMPTED_EXIT_CODE
    stopped_at = assert_checkpoints_intact(run)[-1]
    assert f"{name}: Suspended at step {stopped_at}/{steps}" in suspended.stdout
    assert metric_steps(run)[-1] == stopped_at < steps
    listed = kubetune(home, "jobs")
    assert "Suspended" in listed.stdout

    resumed = kubetune(home, "resume", name, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{name}: resumed" in resumed.stdout
    waited = kubetune(home, "wait", name, timeout=300)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    log = _log(client, name)
    assert f"(step {stopped_at} of {steps})" in log
    assert trained_steps(log) == list(range(1, steps + 1))

    again = kubetune(home, "resume", name)
    assert again.returncode != 0
    assert "is Complete; only a Suspended, Failed or Cancelled job can be resumed" in again.stderr


def test_a_job_whose_supervisor_was_killed_resumes_from_its_checkpoint(
    client, tmp_path, tiny_model_dir, swap_data, reference_weights
):
    run = tmp_path / "run"
    name = client.train_from_spec(TINY_JOB.spec(tiny_model_dir, swap_data, run, name="reboot"))
    wait_for(lambda: checkpoint_steps(run), 180, "the first checkpoint")
    os.kill(client.backend.store.get(name).supervisor_pid, signal.SIGKILL)  # as a machine reboot would
    lost = wait_for(lambda: (j := client.get_job(name)).status.is_terminal and j, 30, "the job to be marked lost")
    assert (lost.status, lost.reason) == (JobStatus.FAILED, "SupervisorLost")
    assert not job_processes(job_tag(client.backend.home, name, lost.created_at))  # orphans stopped
    survived = assert_checkpoints_intact(run)[-1]

    client.resume_job(name)
    job = client.wait_for_job_status(name, timeout=300, polling_interval=0.5)
    assert job.status == JobStatus.COMPLETE
    assert f"step-{survived} (step {survived} of {STEPS})" in _log(client, name)
    assert metric_steps(run) == list(range(1, STEPS + 1))
    assert_same_weights(weights(run), reference_weights)


def test_time_based_checkpoints_bound_the_work_a_sigkill_loses(tmp_path, tiny_model_dir, swap_data):
    interval = 2.0
    job = FaultJob(training={**TINY_JOB.training, "max_steps": 100_000, "checkpoint_every": f"{interval:g}s"})
    run = tmp_path / "run"
    proc = run_torchrun(job.spec(tiny_model_dir, swap_data, run), run)
    wait_for(lambda: len(checkpoint_steps(run)) >= 2, 180, "two time-based checkpoints")
    time.sleep(interval * 0.8)  # into the third interval
    kill_tree(proc.pid)
    proc.wait()

    records = metric_records(run)
    by_step = {r["step"]: r for r in records}
    saved = assert_checkpoints_intact(run)
    assert len(saved) >= 2
    for earlier, later in itertools.pairwise(saved):  # spaced by training time, not by steps
        assert by_step[later]["elapsed_s"] - by_step[earlier]["elapsed_s"] >= interval
        assert by_step[later]["checkpoint_s"] > 0
    step_s = max(b["elapsed_s"] - a["elapsed_s"] for a, b in itertools.pairwise(records))
    lost_s = records[-1]["elapsed_s"] - by_step[saved[-1]]["elapsed_s"]
    assert lost_s <= interval + step_s, f"lost {lost_s:.2f} s of training with a {interval} s checkpoint period"
