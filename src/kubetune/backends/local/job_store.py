"""The local backend's job store: one SQLite database (WAL mode) shared by clients and supervisors.

Several processes read and write it at once: clients submitting, listing and deleting jobs,
and one supervisor per running job recording status, steps and events. WAL lets readers
proceed while a writer commits; every write is one short ``BEGIN IMMEDIATE`` transaction.
Status updates never overwrite a terminal status, so a late writer cannot resurrect a job.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades an older
database in place when it is opened, and a newer one is refused with a clear error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kubetune.contracts.types import Event, Job, JobStatus, Step, StepStatus
from kubetune.errors import ConfigError, JobExistsError

# Each entry upgrades the schema from version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        name TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        reason TEXT,
        message TEXT,
        runtime TEXT,
        trainer_kind TEXT NOT NULL,
        num_nodes INTEGER NOT NULL,
        procs_per_node INTEGER NOT NULL,
        run_dir TEXT NOT NULL,
        managed_run_dir INTEGER NOT NULL,
        spec_json TEXT NOT NULL,
        supervisor_pid INTEGER,
        supervisor_create_time REAL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE TABLE steps (
        job TEXT NOT NULL REFERENCES jobs(name) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        started_at TEXT,
        finished_at TEXT,
        PRIMARY KEY (job, name)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL REFERENCES jobs(name) ON DELETE CASCADE,
        time TEXT NOT NULL,
        type TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX events_by_job ON events(job, id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
_TERMINAL = tuple(s.value for s in (JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED))


def now() -> str:
    """The current UTC time as stored (ISO 8601)."""
    return datetime.now(timezone.utc).isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass
class JobRecord:
    """A stored job: the public view plus what only the backend needs."""

    job: Job
    spec_json: str
    managed_run_dir: bool
    supervisor_pid: int | None
    supervisor_create_time: float | None


class JobStore:
    """Jobs, their steps and events in ``<home>/jobs.db``."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA foreign_keys = ON")
            if write:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                yield conn
        finally:
            conn.close()

    def _migrate(self) -> None:
        try:
            self._upgrade()
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"job store {self.path} is not a readable kubetune job database ({err})") from None

    def _upgrade(self) -> None:
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
        with self._connect(write=True) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"job store {self.path} has schema version {version}, newer than this kubetune knows "
                    f"({SCHEMA_VERSION}); upgrade kubetune"
                )
            for target in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target + 1}")

    def schema_version(self) -> int:
        """The database's schema version."""
        with self._connect() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    def create(self, job: Job, spec_json: str, managed_run_dir: bool) -> None:
        """Insert a new job with its steps (all Pending) and a Created event, atomically.

        Raises:
            JobExistsError: a job of that name exists.
        """
        created = job.created_at.isoformat()
        try:
            with self._connect(write=True) as conn:
                conn.execute(
                    "INSERT INTO jobs (name, status, runtime, trainer_kind, num_nodes, procs_per_node, run_dir,"
                    " managed_run_dir, spec_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.name,
                        job.status.value,
                        job.runtime,
                        job.trainer_kind,
                        job.num_nodes,
                        job.procs_per_node,
                        str(job.run_dir),
                        int(managed_run_dir),
                        spec_json,
                        created,
                    ),
                )
                conn.executemany(
                    "INSERT INTO steps (job, position, name, status) VALUES (?, ?, ?, ?)",
                    [(job.name, i, step.name, step.status.value) for i, step in enumerate(job.steps)],
                )
                self._event(conn, job.name, "Normal", "Created", f"job {job.name} created", created)
        except sqlite3.IntegrityError:
            raise JobExistsError(
                f"job {job.name!r} already exists (see `kubetune jobs`; remove it with `kubetune delete {job.name}`)"
            ) from None

    def set_supervisor(self, name: str, pid: int, create_time: float) -> None:
        """Record the supervisor process that runs the job (pid and start time, to detect pid reuse)."""
        with self._connect(write=True) as conn:
            conn.execute(
                "UPDATE jobs SET supervisor_pid = ?, supervisor_create_time = ? WHERE name = ?",
                (pid, create_time, name),
            )

    def set_status(self, name: str, status: JobStatus, reason: str | None = None, message: str | None = None) -> bool:
        """Move a job to ``status`` unless it already ended; log an event. True if it changed."""
        stamp = now()
        with self._connect(write=True) as conn:
            fields = "status = ?, reason = ?, message = ?"
            values: list = [status.value, reason, message]
            if status in (JobStatus.INITIALIZING, JobStatus.RUNNING):
                fields += ", started_at = COALESCE(started_at, ?)"
                values.append(stamp)
            if status.is_terminal:
                fields += ", finished_at = ?"
                values.append(stamp)
            cursor = conn.execute(
                f"UPDATE jobs SET {fields} WHERE name = ? AND status NOT IN (?, ?, ?)",
                (*values, name, *_TERMINAL),
            )
            if cursor.rowcount == 0:
                return False
            kind = "Warning" if status in (JobStatus.FAILED, JobStatus.CANCELLED) else "Normal"
            self._event(conn, name, kind, reason or status.value, message or f"job is {status.value}", stamp)
            return True

    def reopen(self, name: str, resumable: tuple[JobStatus, ...], launcher_pid: int, launcher_created: float) -> bool:
        """Move a job in one of the ``resumable`` statuses back to Created to run again (``resume``).

        Steps that did not succeed go back to Pending. The process that launches the new
        supervisor stands in as the job's supervisor until that one records itself (if it dies
        first, the job is seen as lost). Returns False when the job was not in those statuses.
        """
        stamp = now()
        with self._connect(write=True) as conn:
            marks = ", ".join("?" for _ in resumable)
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, reason = ?, message = ?, finished_at = NULL, supervisor_pid = ?,"
                f" supervisor_create_time = ? WHERE name = ? AND status IN ({marks})",
                [
                    JobStatus.CREATED.value,
                    "Resumed",
                    "resuming from the newest checkpoint",
                    launcher_pid,
                    launcher_created,
                    name,
                    *(s.value for s in resumable),
                ],
            )
            if cursor.rowcount == 0:
                return False
            conn.execute(
                "UPDATE steps SET status = ?, exit_code = NULL, started_at = NULL, finished_at = NULL"
                " WHERE job = ? AND status != ?",
                (StepStatus.PENDING.value, name, StepStatus.SUCCEEDED.value),
            )
            self._event(conn, name, "Normal", "Resumed", "resuming from the newest checkpoint", stamp)
            return True

    def set_step(self, name: str, step: str, status: StepStatus, exit_code: int | None = None) -> None:
        """Record a step starting or ending, with an event."""
        stamp = now()
        with self._connect(write=True) as conn:
            if status == StepStatus.RUNNING:
                conn.execute(
                    "UPDATE steps SET status = ?, started_at = ? WHERE job = ? AND name = ?",
                    (status.value, stamp, name, step),
                )
            else:
                conn.execute(
                    "UPDATE steps SET status = ?, exit_code = ?, finished_at = ? WHERE job = ? AND name = ?",
                    (status.value, exit_code, stamp, name, step),
                )
            detail = "" if exit_code is None else f" (exit code {exit_code})"
            kind = "Warning" if status == StepStatus.FAILED else "Normal"
            self._event(conn, name, kind, f"Step{status.value}", f"{step} {status.value.lower()}{detail}", stamp)

    def add_event(self, name: str, type_: str, reason: str, message: str) -> None:
        """Append an event to a job's history."""
        with self._connect(write=True) as conn:
            self._event(conn, name, type_, reason, message, now())

    @staticmethod
    def _event(conn: sqlite3.Connection, name: str, type_: str, reason: str, message: str, stamp: str) -> None:
        conn.execute(
            "INSERT INTO events (job, time, type, reason, message) VALUES (?, ?, ?, ?, ?)",
            (name, stamp, type_, reason, message),
        )

    def get(self, name: str) -> JobRecord | None:
        """One job, or None."""
        with self._connect() as conn:
            conn.execute("BEGIN")
            row = conn.execute("SELECT * FROM jobs WHERE name = ?", (name,)).fetchone()
            records = self._records(conn, [row] if row else [])
            conn.execute("COMMIT")
        return records[0] if records else None

    def list(self) -> list[JobRecord]:
        """Every job, oldest first."""
        with self._connect() as conn:
            conn.execute("BEGIN")
            rows = conn.execute("SELECT * FROM jobs ORDER BY created_at, name").fetchall()
            records = self._records(conn, rows)
            conn.execute("COMMIT")
        return records

    def _records(self, conn: sqlite3.Connection, rows: list) -> list[JobRecord]:
        columns = [d[0] for d in conn.execute("SELECT * FROM jobs LIMIT 0").description]
        records = []
        for raw in rows:
            row = dict(zip(columns, raw, strict=True))
            steps = [
                Step(
                    name=s[0], status=StepStatus(s[1]), exit_code=s[2], started_at=_time(s[3]), finished_at=_time(s[4])
                )
                for s in conn.execute(
                    "SELECT name, status, exit_code, started_at, finished_at FROM steps"
                    " WHERE job = ? ORDER BY position",
                    (row["name"],),
                )
            ]
            job = Job(
                name=row["name"],
                status=JobStatus(row["status"]),
                runtime=row["runtime"],
                trainer_kind=row["trainer_kind"],
                num_nodes=row["num_nodes"],
                procs_per_node=row["procs_per_node"],
                created_at=datetime.fromisoformat(row["created_at"]),
                started_at=_time(row["started_at"]),
                finished_at=_time(row["finished_at"]),
                reason=row["reason"],
                message=row["message"],
                run_dir=Path(row["run_dir"]),
                steps=steps,
            )
            records.append(
                JobRecord(
                    job,
                    row["spec_json"],
                    bool(row["managed_run_dir"]),
                    row["supervisor_pid"],
                    row["supervisor_create_time"],
                )
            )
        return records

    def events(self, name: str) -> list[Event]:
        """A job's events in the order they happened."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT time, type, reason, message FROM events WHERE job = ? ORDER BY id", (name,)
            ).fetchall()
        return [Event(datetime.fromisoformat(t), type_, reason, message) for t, type_, reason, message in rows]

    def delete(self, name: str) -> None:
        """Remove a job with its steps and events."""
        with self._connect(write=True) as conn:
            conn.execute("DELETE FROM jobs WHERE name = ?", (name,))

    def active_run_dirs(self) -> dict[str, str]:
        """Run directories of jobs that have not ended, by job name."""
        with self._connect() as conn:
            rows = conn.execute("SELECT name, run_dir FROM jobs WHERE status NOT IN (?, ?, ?)", _TERMINAL).fetchall()
        return dict(rows)
