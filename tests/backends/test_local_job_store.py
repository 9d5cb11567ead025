"""The local job store: versioned schema, atomic writes, terminal statuses final, safe under many writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kubetune.backends.local.job_store import SCHEMA_VERSION, JobStore
from kubetune.contracts.types import Job, JobStatus, Step, StepStatus
from kubetune.errors import ConfigError, JobExistsError


def _job(name: str, run_dir: Path) -> Job:
    return Job(
        name=name,
        status=JobStatus.CREATED,
        runtime=None,
        trainer_kind="custom",
        num_nodes=2,
        procs_per_node=1,
        created_at=datetime.now(timezone.utc),
        run_dir=run_dir / name,
        steps=[Step("node-0", StepStatus.PENDING), Step("node-1", StepStatus.PENDING)],
    )


def test_new_store_has_current_schema_in_wal_mode(tmp_path: Path):
    store = JobStore(tmp_path / "jobs.db")
    assert store.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert JobStore(tmp_path / "jobs.db").schema_version() == SCHEMA_VERSION  # reopening is a no-op


def test_store_from_a_newer_kubetune_is_refused(tmp_path: Path):
    JobStore(tmp_path / "jobs.db")
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer than this kubetune knows"):
        JobStore(tmp_path / "jobs.db")


def test_duplicate_job_is_refused_without_touching_the_first(tmp_path: Path):
    store = JobStore(tmp_path / "jobs.db")
    store.create(_job("a", tmp_path), "{}", managed_run_dir=True)
    store.set_status("a", JobStatus.RUNNING)
    with pytest.raises(JobExistsError):
        store.create(_job("a", tmp_path), '{"other": 1}', managed_run_dir=False)
    record = store.get("a")
    assert record.job.status == JobStatus.RUNNING and record.spec_json == "{}" and record.managed_run_dir
    assert [s.name for s in record.job.steps] == ["node-0", "node-1"]


def test_a_finished_job_keeps_its_final_status(tmp_path: Path):
    store = JobStore(tmp_path / "jobs.db")
    store.create(_job("a", tmp_path), "{}", managed_run_dir=True)
    assert store.set_status("a", JobStatus.FAILED, "TrainerFailed", "node-1 exited with code 1")
    assert not store.set_status("a", JobStatus.COMPLETE, "Succeeded", "late writer")
    job = store.get("a").job
    assert (job.status, job.reason, job.message) == (JobStatus.FAILED, "TrainerFailed", "node-1 exited with code 1")
    assert job.finished_at is not None


def test_delete_removes_steps_and_events(tmp_path: Path):
    store = JobStore(tmp_path / "jobs.db")
    store.create(_job("a", tmp_path), "{}", managed_run_dir=True)
    store.set_step("a", "node-0", StepStatus.RUNNING)
    store.delete("a")
    assert store.get("a") is None and store.events("a") == []
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM steps").fetchone() == (0,)


def _writer(db: str, worker: int, jobs: int) -> None:
    store = JobStore(Path(db))
    for i in range(jobs):
        name = f"w{worker}-{i}"
        store.create(_job(name, Path(db).parent), "{}", managed_run_dir=True)
        store.set_status(name, JobStatus.RUNNING)
        store.set_step(name, "node-0", StepStatus.RUNNING)
        store.set_step(name, "node-0", StepStatus.SUCCEEDED, 0)
        store.set_status(name, JobStatus.COMPLETE, "Succeeded", "done")
        store.list()


def test_many_processes_writing_at_once_keep_the_store_consistent(tmp_path: Path):
    db = tmp_path / "jobs.db"
    JobStore(db)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(db), worker, 15)) for worker in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]

    store = JobStore(db)
    jobs = store.list()
    assert len(jobs) == 60
    assert {record.job.status for record in jobs} == {JobStatus.COMPLETE}
    for record in jobs:
        assert [e.reason for e in store.events(record.job.name)] == [
            "Created", "Running", "StepRunning", "StepSucceeded", "Succeeded"
        ]  # fmt: skip
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
