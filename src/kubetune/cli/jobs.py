"""Job commands: ``kubetune jobs``, ``logs``, ``wait``, ``delete``, ``runtimes``.

They talk to the local backend through :class:`~kubetune.client.TrainerClient`; its data
directory is ``--home``, else ``$KUBETUNE_HOME``, else ``~/.kubetune``.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kubetune.cli.console import console, err_console
from kubetune.cli.job_progress import describe_progress, follow_job
from kubetune.client import Job, JobStatus, TrainerClient
from kubetune.errors import ConfigError

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
    if backend == "local":
        from kubetune.backends.local import LocalBackend

        if namespace is not None:
            raise ConfigError("--namespace: only the kubernetes backend has namespaces")
        return TrainerClient(LocalBackend(home))
    if backend == "kubernetes":
        from kubetune.backends.kubernetes import KubernetesBackend

        return TrainerClient(KubernetesBackend(namespace=namespace))
    raise ConfigError(f"--backend: {backend!r} is not 'local' or 'kubernetes'")


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
    for label, sub in (("adapter", "adapter"), ("merged", "merged"), ("loss curve", "loss.png")):
        if output is not None and (output / sub).exists():
            console.print(f"  {label + ':':<11} {output / sub}")


def report_end(job: Job) -> int:
    """Print how the job ended; the exit code a command should return."""
    if job.status == JobStatus.COMPLETE:
        print_outputs(job)
        return 0
    err_console.print(
        f"[bold red]error:[/] job {job.name} {job.status.value} ({job.reason}): {job.message}",
        highlight=False,
        soft_wrap=True,
    )
    return 1


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
            job.reason if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else "",
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


def format_size(size_bytes: int | None) -> str:
    """``1288490189`` -> ``1.2 GiB`` (``unknown size`` for None)."""
    if size_bytes is None:
        return "unknown size"
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def delete(
    name: JobName,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also remove the job's outputs (trained model, checkpoints, metrics).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --purge: do not ask for confirmation.")] = False,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """Stop a job and remove its record and logs. Its outputs (trained model, checkpoints) stay unless --purge."""
    client = make_client(home, backend, namespace)
    outputs = client.get_job_outputs(name)
    where = ", ".join(outputs.locations)
    if purge and outputs.locations:
        size = format_size(outputs.size_bytes)
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError(f"--purge would remove {where} ({size}); add --yes to confirm without a terminal")
            if not typer.confirm(f"remove {where} ({size}) for good?", default=False):
                raise typer.Exit(1)
        client.delete_job(name, purge=True)
        console.print(f"deleted {name} and its outputs ({size} freed: {where})", soft_wrap=True)
        return
    client.delete_job(name)
    kept = f"; its outputs are kept in {where} ({format_size(outputs.size_bytes)})" if outputs.locations else ""
    console.print(f"deleted {name}{kept}", soft_wrap=True, highlight=False)


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
