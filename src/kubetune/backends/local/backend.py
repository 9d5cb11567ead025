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
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import yaml

from kubetune.backends.base import RuntimeBackend
from kubetune.backends.function_worker import return_values
from kubetune.backends.local.child_env import with_kubetune_importable
from kubetune.backends.local.job_store import JobRecord, JobStore
from kubetune.backends.local.metrics_file import read_all_progress, read_progress
from kubetune.contracts.progress import Progress, read_phase
from kubetune.contracts.run_dir import PREVIOUS_OUTPUT_PREFIX, SOURCE_KINDS, LocalHome, RunDir
from kubetune.contracts.types import EXPORTER_STEP, Event, Job, JobOutputs, JobStatus, Step, StepStatus
from kubetune.errors import ConfigError, JobExistsError, JobNotFoundError, KubetuneError
from kubetune.exporter.preflight import output_problems
from kubetune.initializers.run import check_initializer
from kubetune.initializers.sources import StorageLocation
from kubetune.runtimes import Runtime, apply_runtime, list_runtimes, unknown_runtime
from kubetune.spec.initializer import InitializerSpec
from kubetune.spec.job import JobSpec, require_sources
from kubetune.trainer.preflight import Source, local_path, preflight_problems

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
    names += [f"node-{i}" for i in range(spec.num_nodes)]
    if spec.trainer_kind == "builtin" and spec.trainer.output.wants_export:
        names.append(EXPORTER_STEP)
    return names


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
        """Everything that can be checked before launching.

        Raises:
            KubetuneError: the first of :meth:`problems` (naming the field, file, row and column).
        """
        problems = self.problems(spec)
        if problems:
            raise problems[0]

    def problems(self, spec: JobSpec) -> list[KubetuneError]:
        """Every problem that would stop ``spec`` here, checked without launching anything.

        Runtime, GPUs, initializer sources, the model and dataset (files, format, a sample of
        rows, tokenizer, LoRA target modules: :func:`~kubetune.trainer.preflight.preflight_problems`),
        and the run directory (in use, writable, free disk). ``kubetune validate`` prints them all.
        """
        problems: list[KubetuneError] = []

        def attempt(check, *args) -> None:
            try:
                check(*args)
            except KubetuneError as err:
                problems.append(err)

        if spec.runtime is not None:
            attempt(self.get_runtime, spec.runtime)
        attempt(_check_gpus, spec.resources.gpu)
        sources = spec.initializer
        for kind in SOURCE_KINDS:
            source = getattr(sources, kind) if sources is not None else None
            if source is not None:
                attempt(check_local_initializer, source, f"initializer.{kind}")
        attempt(require_sources, spec)
        model = None
        if spec.trainer_kind == "builtin":
            model, dataset = _builtin_sources(spec)
            problems += preflight_problems(spec.trainer, model, dataset)
            problems += output_problems(spec.trainer)
        attempt(self._check_run_dir, spec, model)
        return problems

    def _check_run_dir(self, spec: JobSpec, model: Source | None) -> None:
        run_dir = self.run_dir_of(spec)
        for other, other_dir in self.store.active_run_dirs().items():
            if Path(other_dir) == run_dir:
                raise ConfigError(f"output_dir: {run_dir} is in use by running job {other!r}")
        check_writable(run_dir, "output_dir" if spec.output_dir is not None else "--home")
        if model is not None:
            check_free_space(run_dir, spec, model)

    def run_dir_of(self, spec: JobSpec) -> Path:
        """The job's run directory: the spec's ``output_dir`` or ``<home>/runs/<name>``."""
        if spec.output_dir is not None:
            return Path(spec.output_dir).expanduser().resolve()
        return self.layout.run_dir(str(spec.name))

    def submit(self, spec: JobSpec) -> str:
        """Apply the spec's runtime (its defaults under the spec's fields), check, record and launch it."""
        if spec.name is None:
            raise ConfigError("name: the local backend needs a job name")
        self._free_name(spec.name)
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

    def _free_name(self, name: str) -> None:
        """Let ``name`` be reused: a builtin job that failed before its first step is forgotten
        (its files stay); any other job of that name refuses.

        Raises:
            JobExistsError: a job of that name exists (the message says how to replace it).
        """
        record = self.store.get(name)
        if record is None:
            return
        job = self._view(record)
        never_trained = job.trainer_kind == "builtin" and job.progress is None
        if job.status == JobStatus.FAILED and never_trained:
            self.store.delete(name)
            shutil.rmtree(self.layout.log_dir(name), ignore_errors=True)
            return
        if job.status.is_terminal:
            raise JobExistsError(
                f"job {name!r} already exists ({job.status.value}); rerun it with `kubetune train --replace` "
                f"(its outputs are kept) or remove it with `kubetune delete {name}`"
            )
        raise JobExistsError(
            f"job {name!r} already exists and is {job.status.value}; wait for it (`kubetune wait {name}`) "
            f"or stop it with `kubetune delete {name}`"
        )

    def set_aside_outputs(self, spec: JobSpec) -> str | None:
        """Rename ``<run>/output`` to ``<run>/output.prev-<UTC timestamp>`` (nothing is deleted).

        Raises:
            ConfigError: a running job uses that run directory.
        """
        if spec.name is None:
            return None
        run_dir = self.run_dir_of(spec)
        output = RunDir(run_dir).output
        if not output.exists():
            return None
        for other, other_dir in self.store.active_run_dirs().items():
            if Path(other_dir) == run_dir:
                raise ConfigError(f"output_dir: {run_dir} is in use by running job {other!r}")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = run_dir / f"{PREVIOUS_OUTPUT_PREFIX}{stamp}"
        counter = 1
        while target.exists():
            counter += 1
            target = run_dir / f"{PREVIOUS_OUTPUT_PREFIX}{stamp}-{counter}"
        output.rename(target)
        return str(target)

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
            if not job.status.is_terminal:
                job.phase = _phase(job)
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

    def get_job_metrics(self, name: str) -> list[Progress]:
        """Every record of the job's ``output/metrics.jsonl`` so far (whole lines only), oldest first."""
        job = self.get_job(name)
        return [] if job.run_dir is None else read_all_progress(RunDir(job.run_dir).metrics_file)

    def get_job_config(self, name: str) -> dict[str, Any] | None:
        """The resolved spec the supervisor wrote to ``output/config.yaml`` (None before it exists)."""
        job = self.get_job(name)
        config = None if job.run_dir is None else RunDir(job.run_dir).config_file
        try:
            return yaml.safe_load(config.read_text(encoding="utf-8")) if config is not None else None
        except (OSError, yaml.YAMLError):
            return None

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

    def cancel_job(self, name: str, reason: str | None = None, message: str | None = None) -> None:
        """Stop an active job without a checkpoint and return once it is Cancelled and its processes are gone
        (so its CPU or GPU is free again); steps still running end Failed.

        With ``reason`` (a study pruning a trial: ``Pruned``), the job is recorded Cancelled with it and
        ``message`` first. SIGINT asks its supervisor to stop the launchers; a worker still in its step
        when its launcher is gone is then killed (it would finish the step and checkpoint). A Suspended
        job, having no processes, is marked Cancelled at once.

        Raises:
            JobNotFoundError. ConfigError: the job already ended, or is still starting.
        """
        job = self.get_job(name)
        if job.status.is_terminal:
            raise ConfigError(f"job {name!r} already ended ({job.status.value}); only an active job can be cancelled")
        record = self._record(name)
        if job.status == JobStatus.SUSPENDED:
            self.store.set_status(
                name, JobStatus.CANCELLED, reason or "Cancelled", message or "cancelled while suspended"
            )
            return
        if record.supervisor_pid is None:
            raise ConfigError(f"job {name!r} is still starting; cancel it once it runs")
        if reason is not None:
            self.store.set_status(
                name, JobStatus.CANCELLED, reason, message
            )  # the supervisor's own record then keeps it
        tag = job_tag(self.home, name, record.job.created_at)
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.supervisor_pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S + 5
        while job_processes(tag) and time.monotonic() < deadline:
            time.sleep(0.2)
        _kill_all(job_processes(tag))
        self.store.set_status(name, JobStatus.CANCELLED, "Terminated", "cancelled; its processes were killed")
        for step in self._record(name).job.steps:
            if step.status == StepStatus.RUNNING:
                self.store.set_step(name, step.name, StepStatus.FAILED)

    def concurrent_job_limit(self, spec: JobSpec) -> int:
        """Jobs like ``spec`` this machine runs at once: its GPUs divided by the GPUs a job takes, else
        its CPU cores divided by the job's worker processes (at least 1)."""
        gpus = spec.resources.gpu
        if gpus:
            import torch

            return max(1, torch.cuda.device_count() // (gpus * spec.num_nodes))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // (spec.procs_per_node * spec.num_nodes))

    # deletion
    def _purgeable(self, record: JobRecord) -> list[Path]:
        """What kubetune wrote for the job: the whole run directory when kubetune chose it, else its
        ``output/`` (with earlier ones set aside) and the initializers' ``model/`` and ``dataset/``."""
        run_dir = record.job.run_dir
        if run_dir is None or not run_dir.exists():
            return []
        if record.managed_run_dir:
            return [run_dir]
        initialized = JobSpec.model_validate_json(record.spec_json).initializer
        names = ["output"] + [
            kind for kind in ("model", "dataset") if initialized is not None and getattr(initialized, kind)
        ]
        paths = [run_dir / name for name in names if (run_dir / name).exists()]
        return paths + sorted(run_dir.glob(f"{PREVIOUS_OUTPUT_PREFIX}*"))

    def get_job_outputs(self, name: str) -> JobOutputs:
        """The job's outputs on disk (what ``delete_job(name, purge=True)`` removes) and their size."""
        paths = self._purgeable(self._record(name))
        return JobOutputs([str(path) for path in paths], sum(_disk_usage(path) for path in paths))

    def delete_job(self, name: str, purge: bool = False) -> None:
        """Stop the job's processes, remove its record and logs; its outputs stay unless ``purge``."""
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
        purged = self._purgeable(record) if purge else []
        self.store.delete(name)
        shutil.rmtree(self.layout.log_dir(name), ignore_errors=True)
        for path in purged:
            shutil.rmtree(path, ignore_errors=True)
        if purged and record.job.run_dir is not None and record.job.run_dir.is_dir():
            with contextlib.suppress(OSError):
                record.job.run_dir.rmdir()  # only when nothing else is left in it


def _disk_usage(path: Path) -> int:
    """Bytes the files under ``path`` take (links not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for file in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / file).lstat().st_size
    return total


def _phase(job: Job) -> str | None:
    """What an active job is doing: fetching (its initializer steps), else the trainer's phase record."""
    for step in job.steps:
        if step.status == StepStatus.RUNNING and step.name.endswith("-initializer"):
            return f"fetching {step.name.removesuffix('-initializer')}"
    record = read_phase(RunDir(job.run_dir).output)
    return record.describe() if record is not None else None


def _check_gpus(wanted: int | None) -> None:
    if wanted:
        import torch

        have = torch.cuda.device_count()
        if have < wanted:
            raise ConfigError(f"resources.gpu: {wanted} GPUs per node requested, this machine has {have}")


def _builtin_sources(spec: JobSpec) -> tuple[Source | None, Source | None]:
    """A builtin job's local model and dataset to check: the paths it names, or the local sources
    its initializers copy (None when fetched from afar, or not given at all)."""
    sources = spec.initializer
    found: dict[str, Source | None] = {}
    for kind in SOURCE_KINDS:
        path = getattr(spec.trainer, kind).path
        initializer = getattr(sources, kind) if sources is not None else None
        found[kind] = None
        if initializer is not None:
            found[kind] = _local_source(initializer, f"initializer.{kind}.storage_uri")
        elif path is not None:
            found[kind] = Source(f"trainer.{kind}.path", path)
    return found["model"], found["dataset"]


def _local_source(initializer: InitializerSpec, field: str) -> Source | None:
    """The user's own copy of what an initializer fetches, when it is on this machine (checked
    there, so errors name the user's file, not the run directory's copy)."""
    location = StorageLocation.parse(initializer.storage_uri)
    if location.scheme == "file":
        return Source(field, location.location)
    if location.scheme == "pkg":
        return Source(field, initializer.storage_uri)
    return None


def check_writable(run_dir: Path, field: str) -> None:
    """The run directory exists and is writable, or can be created.

    Raises:
        ConfigError: it (or what is in its way) is a file, or the nearest existing folder is
            not writable.
    """
    existing = run_dir
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == run_dir else f"is under a file ({existing})"
        raise ConfigError(f"{field}: {run_dir} {what}; choose a folder")
    writable = os.access(existing, os.W_OK | os.X_OK)
    if writable and existing == run_dir and RunDir(run_dir).output.exists():
        writable = os.access(RunDir(run_dir).output, os.W_OK | os.X_OK)
    if not writable or not _can_create_in(existing):
        raise ConfigError(f"{field}: cannot write to {run_dir} ({existing} is not writable)")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (os.access says yes for /proc to root)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_free_space(run_dir: Path, spec: JobSpec, model: Source) -> None:
    """The disk under the run directory has room for the outputs: the merged model and, for a full
    fine-tune with checkpoints, weights plus optimizer state per kept checkpoint.

    Raises:
        ConfigError: fewer bytes free than the estimate (both printed).
    """
    try:
        weights = _disk_usage(local_path(model))
    except KubetuneError:
        return  # reported by the model check
    training = spec.trainer.training
    need = weights if spec.trainer.output.save_merged else 0
    if spec.trainer.method == "full" and training.checkpoint_every is not None:
        need += 3 * weights * (training.keep_checkpoints or 1)  # weights + two Adam moments each
    existing = run_dir
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < need:
        raise ConfigError(
            f"output_dir: {run_dir} has {free / 2**20:,.1f} MiB free; this job writes about {need / 2**20:,.1f} MiB "
            "(merged model, checkpoints)"
        )


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
