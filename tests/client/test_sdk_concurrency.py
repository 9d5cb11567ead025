"""Two jobs running at once keep their own state, logs and outputs; the store stays consistent."""

from __future__ import annotations

import sqlite3
import threading

from kubetune.backends.local import LocalBackend
from kubetune.client import CustomTrainer, JobStatus, Name, TrainerClient


def tagged_ranks(tag: str) -> str:
    """Return this job's tag and the worker's rank, after a moment of work."""
    import os
    import time

    time.sleep(1.0)
    return f"{tag}:{os.environ['RANK']}"


def test_two_concurrent_jobs_do_not_mix_state_or_outputs(client: TrainerClient, backend: LocalBackend):
    names = ["job-a", "job-b"]
    submitted: dict[str, str] = {}

    def submit(name: str) -> None:
        trainer = CustomTrainer(func=tagged_ranks, func_args={"tag": name}, procs_per_node=2)
        submitted[name] = client.train(trainer=trainer, options=[Name(name)])

    threads = [threading.Thread(target=submit, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(submitted.values()) == names

    readers_failed: list[BaseException] = []
    stop = threading.Event()

    def keep_reading() -> None:
        reader = TrainerClient(LocalBackend(backend.home))
        try:
            while not stop.is_set():
                assert len(reader.list_jobs()) == 2
        except BaseException as err:
            readers_failed.append(err)

    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        jobs = [client.wait_for_job_status(name, timeout=180, polling_interval=0.3) for name in names]
    finally:
        stop.set()
        reader.join()

    assert not readers_failed
    assert all(job.status == JobStatus.COMPLETE for job in jobs)
    assert jobs[0].run_dir != jobs[1].run_dir
    for name in names:
        assert client.get_job_return_values(name) == {0: f"{name}:0", 1: f"{name}:1"}
        reasons = [event.reason for event in client.get_job_events(name)]
        assert reasons[0] == "Created" and reasons[-1] == "Succeeded"
        assert all(f"{name}:" in line for line in client.get_job_logs(name) if "returned" in line)
    with sqlite3.connect(backend.home / "jobs.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
