"""The local job store under faults: a submitter killed inside train(), two writers at once, old and foreign files."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from kubetune.backends.local import LocalBackend
from kubetune.backends.local import backend as backend_module
from kubetune.backends.local.job_store import SCHEMA_VERSION, JobStore
from kubetune.client import JobStatus, TrainerClient
from kubetune.errors import ConfigError
from tests.faults.jobs import wait_for

SUBMIT = textwrap.dedent(
    """
    import sys
    from kubetune.backends.local import LocalBackend
    from kubetune.client import CustomTrainer, Name, TrainerClient

    def hello():
        return "hello"

    TrainerClient(LocalBackend(sys.argv[1])).train(trainer=CustomTrainer(func=hello), options=[Name("victim")])
    print("submitted", flush=True)
    """
)


def _job_row(db) -> bool:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM jobs WHERE name = 'victim'").fetchone()[0] == 1
    except sqlite3.Error:
        return False


def test_submitter_killed_inside_train_leaves_a_job_that_still_ends(tmp_path, monkeypatch):
    # A job row whose submitter died before starting a supervisor is failed after a grace period (60 s by
    # default); shortened here. The supervisor, once started, records itself, so it never trips this.
    monkeypatch.setattr(backend_module, "START_GRACE_S", 8.0)
    home = tmp_path / "home"
    submitter = subprocess.Popen([sys.executable, "-c", SUBMIT, str(home)], stdout=subprocess.PIPE, text=True)
    wait_for(lambda: _job_row(home / "jobs.db"), 60, "the job row", poll=0.001)
    submitter.send_signal(signal.SIGKILL)  # between recording the job and (maybe) recording its supervisor
    submitter.wait()
    client = TrainerClient(LocalBackend(home))
    job = client.wait_for_job_status("victim", status=set(JobStatus) - {JobStatus.CREATED, JobStatus.RUNNING},
                                     timeout=120, polling_interval=0.2)  # fmt: skip
    if job.status == JobStatus.COMPLETE:  # killed after the supervisor was started
        assert client.get_job_return_values("victim") == {0: "hello"}
    else:  # killed before: nothing runs it, and it is reported instead of left Created
        assert (job.status, job.reason) == (JobStatus.FAILED, "SupervisorLost"), job
        assert job.message == "the job was never started (its submitter exited before launching it)"
    with sqlite3.connect(home / "jobs.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    client.delete_job("victim")


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    from pathlib import Path
    from kubetune.backends.local.job_store import JobStore
    from kubetune.contracts.types import Job, JobStatus, Step, StepStatus
    from kubetune.errors import JobExistsError

    store, me = JobStore(Path(sys.argv[1])), sys.argv[2]

    def job(name):
        return Job(name=name, status=JobStatus.CREATED, runtime=None, trainer_kind="custom", num_nodes=1,
                   procs_per_node=1, created_at=datetime.now(timezone.utc), run_dir=Path("/tmp") / name,
                   steps=[Step("node-0", StepStatus.PENDING)])

    won = 0
    for i in range(40):
        store.create(job(f"{me}-{i}"), "{}", managed_run_dir=True)
        store.set_status(f"{me}-{i}", JobStatus.RUNNING)
        store.set_step(f"{me}-{i}", "node-0", StepStatus.SUCCEEDED, 0)
        store.add_event(f"{me}-{i}", "Normal", "Note", f"written by {me}")
        store.set_status(f"{me}-{i}", JobStatus.COMPLETE, "Succeeded", "done")
        try:
            store.create(job(f"shared-{i}"), "{}", managed_run_dir=True)
            won += 1
        except JobExistsError:
            pass
        assert len(store.list()) >= i + 1
    print(won)
    """
)


def test_two_clients_writing_at_once_keep_the_store_consistent(tmp_path):
    db = tmp_path / "jobs.db"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), name], stdout=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    assert sum(int(out) for out in outputs) == 40  # each shared name was won by exactly one writer
    store = JobStore(db)
    jobs = {record.job.name: record.job for record in store.list()}
    assert len(jobs) == 120
    for name in (f"{who}-{i}" for who in "ab" for i in range(40)):
        assert jobs[name].status == JobStatus.COMPLETE
        assert [e.reason for e in store.events(name)] == ["Created", "Running", "StepSucceeded", "Note", "Succeeded"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_store_from_an_older_schema_version_is_migrated(tmp_path):
    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as conn:  # version 0: the file exists, nothing in it yet (an interrupted first open)
        conn.execute("PRAGMA user_version = 0")
        conn.execute("CREATE TABLE unrelated (x)")
    store = JobStore(db)
    assert store.schema_version() == SCHEMA_VERSION
    assert LocalBackend(tmp_path).list_jobs() == []
    JobStore(db)  # opening again is a no-op
    assert store.schema_version() == SCHEMA_VERSION


def test_store_from_a_newer_version_or_not_a_database_is_a_clear_error(tmp_path):
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError) as caught:
        JobStore(newer)
    assert str(caught.value) == (
        f"job store {newer} has schema version {SCHEMA_VERSION + 1}, newer than this kubetune knows "
        f"({SCHEMA_VERSION}); upgrade kubetune"
    )
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(ConfigError) as caught:
        JobStore(garbage)
    assert str(caught.value) == f"job store {garbage} is not a readable kubetune job database (file is not a database)"
