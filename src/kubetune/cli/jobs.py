"""Job commands: ``kubetune jobs``, ``logs``, ``wait``, ``suspend``, ``resume``, ``delete``, ``runtimes``.

They talk to the local backend through :class:`~kubetune.client.TrainerClient`; its data
directory is ``--home``, else ``$KUBETUNE_HOME``, else ``~/.kubetune``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kubetune.cli.console import console, err_console
from kubetune.cli.job_progress import describe_progress, follow_job
from kubetune.client import Job, JobStatus, TrainerClient
from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError, JobExistsError, JobNotFoundError

Home = Annotated[
    Path | None,
    typer.Option("--home", envvar="KUBETUNE_HOME", help="kubetune data directory (default ~/.kubetune)."),
]
Backend = Annotated[
    str,
    typer.Option(
        "--backend", envvar="KUBETUNE_BACKEND", help="'local' (this machine) or 'kubernetes' (current kubeconfig)."
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace", "-n", envvar="KUBETUNE_NAMESPACE", help="Kubernetes namespace (default: kubeconfig's)."
    ),
]
JobName = Annotated[str, typer.Argument(help="Job name.")]


def make_client(home: Path | None, backend: str = "local", namespace: str | None = None) -> TrainerClient:
    """A client of the chosen backend: local (rooted at ``home``) or Kubernetes (in ``namespace``).

    Raises:
        ConfigError: an unknown backend name, or an option that backend does not take.
    """
    if backend == "local" and namespace is not None:
        raise ConfigError("--namespace: only the kubernetes backend has namespaces")
    options = {"local": {"home": home}, "kubernetes": {"namespace": namespace}}.get(backend)
    if options is None:
        raise ConfigError(f"--backend: {backend!r} is not 'local' or 'kubernetes'")
    return TrainerClient(backend, **options)


def _age(job: Job) -> str:
    seconds = int((datetime.now(timezone.utc) - job.created_at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def print_outputs(job: Job) -> None:
    """The finished job's output locations (run output, adapter, merged model, loss curve)."""
    output = job.output_dir
    steps = job.progress.step if job.progress else None
    done = f"done in {steps} steps" if steps is not None else "done"
    console.print(f"[bold green]{done}[/]; outputs in {output}")
    if job.run_dir is None:
        return
    layout = RunDir(job.run_dir)
    for label, path in (("adapter", layout.adapter), ("merged", layout.merged), ("loss curve", layout.loss_curve)):
        if path.exists():
            console.print(f"  {label + ':':<11} {path}")


def report_end(job: Job) -> int:
    """Print how the job ended (or stopped); the exit code a command should return."""
    if job.status == JobStatus.COMPLETE:
        print_outputs(job)
        return 0
    if job.status == JobStatus.SUSPENDED:
        err_console.print(f"job {job.name} Suspended ({job.reason}): {job.message}", highlight=False, soft_wrap=True)
        return 1
    err_console.print(
        f"[bold red]error:[/] job {job.name} {job.status.value} ({job.reason}): {job.message}",
        highlight=False,
        soft_wrap=True,
    )
    return 1


def delete_finished(client: TrainerClient, name: str) -> None:
    """Delete job ``name`` if it exists and has ended; refuse if it is still active.

    Raises:
        JobExistsError: the job is still running.
    """
    try:
        job = client.get_job(name)
    except JobNotFoundError:
        return
    if not job.status.is_terminal:
        raise JobExistsError(f"job {name!r} is still {job.status.value}; wait for it or `kubetune delete {name}`")
    client.delete_job(name)


def jobs(home: Home = None, backend: Backend = "local", namespace: Namespace = None) -> None:
    """List jobs with their status and training progress."""
    table = Table("NAME", "STATUS", "KIND", "NODES", "STEP", "PROGRESS", "AGE", "REASON")
    for job in make_client(home, backend, namespace).list_jobs():
        step = f"{job.progress.step}/{job.progress.total_steps}" if job.progress else "-"
        table.add_row(
            job.name,
            job.status.value,
            job.trainer_kind,
            f"{job.num_nodes}x{job.procs_per_node}",
            step,
            describe_progress(job) or "-",
            _age(job),
            job.reason if job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUSPENDED) else "",
        )
    console.print(table)


def logs(
    name: JobName,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    step: Annotated[
        str, typer.Option(help="model-initializer, dataset-initializer, node-0, node-1... or supervisor.")
    ] = "node-0",
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """Print the log of one step of a job."""
    for line in make_client(home, backend, namespace).get_job_logs(name, step=step, follow=follow):
        typer.echo(line)


def wait(
    name: JobName,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 86400.0,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """Show a live progress bar until the job ends; exit 0 only if it completed."""
    client = make_client(home, backend, namespace)
    client.get_job(name)
    job = follow_job(client, name, console, deadline_s=timeout)
    raise typer.Exit(report_end(job))


def suspend(
    name: JobName,
    timeout: Annotated[float, typer.Option(help="Wait at most this many seconds for the checkpoint.")] = 600.0,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """Stop a running job keeping its work: the workers checkpoint and exit (`kubetune resume` continues).

    Waits until the job is Suspended (on Kubernetes: sets the TrainJob's spec.suspend, then waits for
    the controller to report it).
    """
    job = make_client(home, backend, namespace).suspend_job(name, timeout=timeout)
    step = f" at step {job.progress.step}/{job.progress.total_steps}" if job.progress else ""
    console.print(f"{name}: {job.status.value}{step}")


def resume(name: JobName, home: Home = None, backend: Backend = "local", namespace: Namespace = None) -> None:
    """Continue a Suspended job from its newest checkpoint (locally also a Failed or Cancelled one,
    e.g. after a reboot); `kubetune wait NAME` follows it."""
    job = make_client(home, backend, namespace).resume_job(name)
    console.print(f"{name}: resumed ({job.status.value})")


def delete(name: JobName, home: Home = None, backend: Backend = "local", namespace: Namespace = None) -> None:
    """Stop a job's processes and remove its state, logs and (kubetune-chosen) run directory."""
    make_client(home, backend, namespace).delete_job(name)
    console.print(f"deleted {name}")


def runtimes(home: Home = None, backend: Backend = "local", namespace: Namespace = None) -> None:
    """List the runtimes from the catalog: model family, method, model and default scale."""
    table = Table("NAME", "FAMILY", "METHOD", "MODEL", "NODES", "PROCS/NODE", "GPUS/NODE")
    for runtime in make_client(home, backend, namespace).list_runtimes():
        limits = runtime.resources_per_node.get("limits") or {}
        table.add_row(
            runtime.name,
            runtime.family or "-",
            runtime.method,
            runtime.model_uri or "-",
            str(runtime.num_nodes),
            str(runtime.procs_per_node),
            str(limits.get("nvidia.com/gpu", 0)),
        )
    console.print(table)
