"""Detached jobs outlive their submitter; crashes and lost supervisors end Failed with a reason; delete stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from kubetune.backends.local import LocalBackend
from kubetune.client import CustomTrainer, JobStatus, Name, TrainerClient
from kubetune.errors import JobNotFoundError


def wait_for_files(paths: list[Path], timeout: float = 120.0) -> None:
    """Block until every path exists (workers signal readiness by writing files)."""
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not written in {timeout}s: {[str(p) for p in paths if not p.exists()]}")
        time.sleep(0.2)


def sleep_after_marking(marker_dir: str, seconds: float) -> int:
    """Write ``<marker_dir>/rank-<RANK>.pid`` holding this worker's pid, then sleep."""
    import os
    import time
    from pathlib import Path

    Path(marker_dir, f"rank-{os.environ['RANK']}.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    return int(os.environ["RANK"])


def _sleeping_job(client: TrainerClient, name: str, markers: Path, procs: int = 2, seconds: float = 300) -> list[int]:
    markers.mkdir()
    client.train(
        trainer=CustomTrainer(
            func=sleep_after_marking, func_args={"marker_dir": str(markers), "seconds": seconds}, procs_per_node=procs
        ),
        options=[Name(name)],
    )
    files = [markers / f"rank-{rank}.pid" for rank in range(procs)]
    wait_for_files(files)
    return [int(path.read_text()) for path in files]


def test_job_submitted_by_a_killed_process_completes_and_is_seen_by_a_new_client(tmp_path: Path):
    home = tmp_path / "home"
    script = textwrap.dedent(
        f"""
        import sys, time
        from kubetune.backends.local import LocalBackend
        from kubetune.client import CustomTrainer, Name, TrainerClient

        def answer(base):
            import time
            time.sleep(3)
            return base + 1

        client = TrainerClient(LocalBackend({str(home)!r}))
        print(client.train(trainer=CustomTrainer(func=answer, func_args={{"base": 41}}), options=[Name("detached")]),
              flush=True)
        time.sleep(600)
        """
    )
    submitter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert submitter.stdout.readline().strip() == "detached"
    finally:
        submitter.send_signal(signal.SIGKILL)
        submitter.wait()

    later = TrainerClient(LocalBackend(home))
    try:
        followed = list(later.get_job_logs("detached", follow=True))  # returns once the job has ended
        assert any("answer returned 42" in line for line in followed)
        job = later.get_job("detached")
        assert job.status == JobStatus.COMPLETE
        assert later.get_job_return_values("detached") == {0: 42}
    finally:
        later.delete_job("detached")


def test_sigkilled_workers_mark_the_job_failed_with_a_reason(client: TrainerClient, tmp_path: Path):
    pids = _sleeping_job(client, "crash", tmp_path / "markers")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    job = client.wait_for_job_status("crash", status={JobStatus.FAILED}, timeout=60, polling_interval=0.3)
    assert job.reason == "TrainerFailed"
    assert "node-0 exited with code" in job.message
    assert job.finished_at is not None
    assert any(event.reason == "TrainerFailed" for event in client.get_job_events("crash"))


def test_a_job_whose_supervisor_died_is_failed_on_next_read_and_its_workers_stopped(
    client: TrainerClient, backend: LocalBackend, tmp_path: Path
):
    pids = _sleeping_job(client, "orphaned", tmp_path / "markers", procs=1)
    supervisor = backend.store.get("orphaned").supervisor_pid
    os.kill(supervisor, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(supervisor)], timeout=10)

    job = client.get_job("orphaned")
    assert job.status == JobStatus.FAILED
    assert job.reason == "SupervisorLost"
    assert str(supervisor) in job.message
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)], timeout=10)
    assert not alive


def test_delete_stops_the_process_group_and_removes_state_but_not_outputs(
    client: TrainerClient, backend: LocalBackend, tmp_path: Path
):
    pids = _sleeping_job(client, "doomed", tmp_path / "markers")
    run_dir = client.get_job("doomed").run_dir
    assert run_dir.is_dir()

    client.delete_job("doomed")

    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    with pytest.raises(JobNotFoundError):
        client.get_job("doomed")
    assert client.list_jobs() == []
    assert run_dir.is_dir()  # the run directory (outputs) stays; only `delete_job(purge=True)` removes it
    assert not (backend.home / "logs" / "doomed").exists()
