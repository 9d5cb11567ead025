"""The local backend: each job is a detached supervisor process tree on this machine.

Its data directory (``$KUBETUNE_HOME``, default ``~/.kubetune``) holds the job store, the run
directories kubetune chose and one log per step; :class:`kubetune.contracts.run_dir.LocalHome`
names every path in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from kubetune.backends.base import RuntimeBackend
from kubetune.backends.function_worker import return_values
from kubetune.backends.local.child_env import with_kubetune_importable
from kubetune.backends.local.job_store import JobRecord, JobStore
from kubetune.backends.local.metrics_file import read_progress
from kubetune.contracts.run_dir import SOURCE_KINDS, LocalHome, RunDir
from kubetune.contracts.types import Event, Job, JobStatus, Step, StepStatus
from kubetune.errors import ConfigError, JobExistsError, JobNotFoundError, KubetuneError
from kubetune.initializers.run import check_initializer
from kubetune.runtimes import Runtime, apply_runtime, list_runtimes, unknown_runtime
from kubetune.spec.initializer import InitializerSpec
from kubetune.spec.job import JobSpec, require_sources
from kubetune.trainer.preflight import preflight

HOME_ENV = "KUBETUNE_HOME"
#: Statuses ``resume_job`` continues from: stopped with a checkpoint, or interrupted (supervisor lost...).
RESUMABLE = (JobStatus.SUSPENDED, JobStatus.FAILED, JobStatus.CANCELLED)
START_GRACE_S = 60.0
STOP_GRACE_S = 15.0


def default_home() -> Path:
    """``$KUBETUNE_HOME``, else ``~/.kubetune``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".kubetune").expanduser()


def step_names(spec: JobSpec) -> list[str]:
    """The steps a job runs, in order."""
    names = []
    if spec.initializer is not None:
        names += [f"{kind}-initializer" for kind in SOURCE_KINDS if getattr(spec.initializer, kind)]
    return names + [f"node-{i}" for i in range(spec.num_nodes)]


JOB_TAG_ENV = "KUBETUNE_LOCAL_JOB"


def job_tag(home: Path, name: str, created_at: datetime) -> str:
    """The value of ``KUBETUNE_LOCAL_JOB`` in every process of one job (torchrun puts workers in
    sessions of their own, so the process group alone does not reach them)."""
    return f"{home}::{name}::{created_at.isoformat()}"


def job_processes(tag: str) -> list[psutil.Process]:
    """Live processes of the job tagged ``tag`` (zombies excluded)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(JOB_TAG_ENV) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _kill_all(processes: list[psutil.Process]) -> None:
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(processes, timeout=5)


def _alive(pid: int | None, create_time: float | None) -> bool:
    """True when the process ``pid`` exists, is the one started at ``create_time`` and is not a zombie."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class LocalBackend(RuntimeBackend):
    """Runs jobs as local process trees: initializers, then ``torchrun`` agents on loopback.

    Args:
        home: data directory; default ``$KUBETUNE_HOME`` or ``~/.kubetune``.
    """

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home).expanduser().resolve() if home is not None else default_home().resolve()
        self.layout = LocalHome(self.home)
        self.store = JobStore(self.layout.jobs_db)

    # runtimes
    def list_runtimes(self) -> list[Runtime]:
        """The packaged runtime catalog (``kubetune.runtimes``), sorted by name."""
        return list_runtimes()

    def get_runtime(self, name: str) -> Runtime:
        """A packaged runtime. Raises ConfigError naming the closest runtimes if there is none called ``name``."""
        runtimes = {runtime.name: runtime for runtime in self.list_runtimes()}
        if name not in runtimes:
            raise unknown_runtime(name, runtimes)
        return runtimes[name]

    # submission
    def check(self, spec: JobSpec) -> None:
        """Everything that can be checked before launching: raises ConfigError naming the field."""
        if spec.runtime is not None:
            self.get_runtime(spec.runtime)
        if spec.resources.gpu:
            import torch

            have = torch.cuda.device_count()
            if have < spec.resources.gpu:
                raise ConfigError(
                    f"resources.gpu: {spec.resources.gpu} GPUs per node requested, this machine has {have}"
                )
        if spec.initializer is not None:
            for kind in SOURCE_KINDS:
                source = getattr(spec.initializer, kind)
                if source is not None:
                    check_local_initializer(source, f"initializer.{kind}")
        require_sources(spec)
        if spec.trainer_kind == "builtin":
            sources = spec.initializer
            preflight(
                spec.trainer,
                model_fetched=sources is not None and sources.model is not None,
                dataset_fetched=sources is not None and sources.dataset is not None,
            )
        run_dir = self.run_dir_of(spec)
        for other, other_dir in self.store.active_run_dirs().items():
            if Path(other_dir) == run_dir:
                raise ConfigError(f"output_dir: {run_dir} is in use by running job {other!r}")

    def run_dir_of(self, spec: JobSpec) -> Path:
        """The job's run directory: the spec's ``output_dir`` or ``<home>/runs/<name>``."""
        if spec.output_dir is not None:
            return Path(spec.output_dir).expanduser().resolve()
        return self.layout.run_dir(str(spec.name))

    def submit(self, spec: JobSpec) -> str:
        """Apply the spec's runtime (its defaults under the spec's fields), check, record and launch it."""
        if spec.name is None:
            raise ConfigError("name: the local backend needs a job name")
        if self.store.get(spec.name) is not None:
            raise JobExistsError(
                f"job {spec.name!r} already exists (see `kubetune jobs`; remove it with `kubetune delete {spec.name}`)"
            )
        if spec.runtime is not None:
            spec = apply_runtime(spec, self.get_runtime(spec.runtime))
        self.check(spec)
        run_dir = self.run_dir_of(spec)
        job = Job(
            name=spec.name,
            status=JobStatus.CREATED,
            runtime=spec.runtime,
            trainer_kind=spec.trainer_kind,
            num_nodes=spec.num_nodes,
            procs_per_node=spec.procs_per_node,
            created_at=datetime.now(timezone.utc),
            run_dir=run_dir,
            steps=[Step(name, StepStatus.PENDING) for name in step_names(spec)],
        )
        self.store.create(job, spec.model_dump_json(), managed_run_dir=spec.output_dir is None)
        try:
            self._launch(spec.name, run_dir, job_tag(self.home, spec.name, job.created_at))
        except BaseException:
            self.store.delete(spec.name)
            raise
        return spec.name

    def _launch(self, name: str, run_dir: Path, tag: str) -> None:
        log_dir = self.layout.log_dir(name)
        log_dir.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = with_kubetune_importable(dict(os.environ))
        env[JOB_TAG_ENV] = tag
        with self.layout.log_file(name, "supervisor").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubetune.backends.local.supervisor", "--home", str(self.home), "--job", name],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = None
        self.store.set_supervisor(name, proc.pid, create_time)

    # reading
    def _record(self, name: str) -> JobRecord:
        record = self.store.get(name)
        if record is None:
            raise JobNotFoundError(f"no job named {name!r} in {self.home} (see `kubetune jobs`)")
        return record

    def _view(self, record: JobRecord) -> Job:
        """The public job with stale supervisors detected and progress attached."""
        job = record.job
        if not job.status.is_terminal and job.status != JobStatus.SUSPENDED and self._supervisor_lost(record):
            pid = record.supervisor_pid
            message = (
                f"the supervisor process (pid {pid}) exited without finishing the job"
                if pid is not None
                else "the job was never started (its submitter exited before launching it)"
            )
            if self.store.set_status(job.name, JobStatus.FAILED, "SupervisorLost", message):
                _kill_all(job_processes(job_tag(self.home, job.name, job.created_at)))
            job = self._record(job.name).job
        if job.run_dir is not None and job.trainer_kind == "builtin":
            job.progress = read_progress(RunDir(job.run_dir).metrics_file)
        return job

    @staticmethod
    def _supervisor_lost(record: JobRecord) -> bool:
        if record.supervisor_pid is None:
            age = (datetime.now(timezone.utc) - record.job.created_at).total_seconds()
            return age > START_GRACE_S
        return not _alive(record.supervisor_pid, record.supervisor_create_time)

    def list_jobs(self) -> list[Job]:
        return [self._view(record) for record in self.store.list()]

    def get_job(self, name: str) -> Job:
        return self._view(self._record(name))

    def get_job_events(self, name: str) -> list[Event]:
        self._record(name)
        return self.store.events(name)

    def get_job_return_values(self, name: str) -> dict[int, Any]:
        job = self.get_job(name)
        return return_values(job.run_dir) if job.run_dir is not None else {}

    def log_path(self, name: str, step: str) -> Path:
        """The log file of one step (it may not exist yet)."""
        job = self.get_job(name)
        steps = [s.name for s in job.steps]
        if step not in steps and step != "supervisor":
            raise ConfigError(f"step: job {name!r} has no step {step!r} (steps: {', '.join(steps)})")
        return self.layout.log_file(name, step)

    def get_job_logs(self, name: str, step: str = "node-0", follow: bool = False) -> Iterator[str]:
        path = self.log_path(name, step)
        if not follow:
            if path.exists():
                yield from path.read_text(errors="replace").splitlines()
            return
        yield from self._follow(name, path)

    def _follow(self, name: str, path: Path, poll_s: float = 0.3) -> Iterator[str]:
        offset = 0
        pending = b""
        while True:
            finished = self.get_job(name).status.is_terminal
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if finished:
                if pending:
                    yield pending.decode(errors="replace")
                return
            time.sleep(poll_s)

    # suspend and resume
    def suspend_job(self, name: str) -> None:
        """Ask the job's supervisor to stop it keeping its work (SIGUSR1): the workers finish their step,
        write a checkpoint and exit; the job becomes Suspended. Returns once asked; idempotent.

        Raises:
            JobNotFoundError. ConfigError: the job already ended, or has no supervisor yet.
        """
        job = self.get_job(name)
        if job.status == JobStatus.SUSPENDED:
            return
        if job.status.is_terminal:
            raise ConfigError(f"job {name!r} already ended ({job.status.value}); only an active job can be suspended")
        record = self._record(name)
        if record.supervisor_pid is None:
            raise ConfigError(f"job {name!r} is still starting; suspend it once it runs")
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.supervisor_pid, signal.SIGUSR1)

    def resume_job(self, name: str) -> None:
        """Run a Suspended job again (also a Failed or Cancelled one, e.g. after the machine rebooted):
        initializers that finished are kept and the trainer continues from the newest checkpoint.

        Raises:
            JobNotFoundError. ConfigError: the job is active or Complete, or another active job
            uses its run directory.
        """
        job = self.get_job(name)
        if job.status not in RESUMABLE:
            raise ConfigError(
                f"job {name!r} is {job.status.value}; only a Suspended, Failed or Cancelled job can be resumed"
            )
        for other, other_dir in self.store.active_run_dirs().items():
            if other != name and Path(other_dir) == job.run_dir:
                raise ConfigError(f"job {name!r}: its run directory {job.run_dir} is in use by job {other!r}")
        me = psutil.Process()
        if not self.store.reopen(name, RESUMABLE, me.pid, me.create_time()):
            raise ConfigError(f"job {name!r} changed while resuming it; look at `kubetune jobs` and retry")
        self._launch(name, job.run_dir, job_tag(self.home, name, job.created_at))

    # deletion
    def delete_job(self, name: str) -> None:
        record = self._record(name)
        tag = job_tag(self.home, name, record.job.created_at)
        pid = record.supervisor_pid
        if pid is not None and _alive(pid, record.supervisor_create_time):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)  # the supervisor stops its agents, which stop their workers
        deadline = time.monotonic() + STOP_GRACE_S
        while (left := job_processes(tag)) and time.monotonic() < deadline:
            time.sleep(0.2)
        _kill_all(left)
        self.store.delete(name)
        shutil.rmtree(self.layout.log_dir(name), ignore_errors=True)
        if record.managed_run_dir and record.job.run_dir is not None:
            shutil.rmtree(record.job.run_dir, ignore_errors=True)


def check_local_initializer(source: InitializerSpec, field: str) -> None:
    """Refuse, before launch, an initializer this machine cannot run (naming ``field``).

    Raises:
        ConfigError: an unknown scheme, a missing local source, or a Kubernetes Secret reference
            (only the Kubernetes backend can read those).
    """
    if any(ref.kubernetes is not None for ref in source.secret_refs()):
        raise ConfigError(f"{field}: a Kubernetes Secret reference needs the Kubernetes backend; use env or file here")
    try:
        check_initializer(source)
    except KubetuneError as err:
        raise ConfigError(f"{field}.storage_uri: {err}") from None
