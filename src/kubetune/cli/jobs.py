"""Job commands: ``kubetune jobs``, ``describe``, ``events``, ``logs``, ``wait``, ``suspend``, ``resume``, ``delete``,
``runtimes``.

They talk to the local backend through :class:`~kubetune.client.TrainerClient`; its data
directory is ``--home``, else ``$KUBETUNE_HOME``, else ``~/.kubetune``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kubetune.cli.console import console, err_console
from kubetune.cli.job_progress import describe_progress, follow_job
from kubetune.client import Job, JobStatus, TrainerClient
from kubetune.contracts.progress import Progress
from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError, KubetuneError

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
Output = Annotated[
    str | None,
    typer.Option("--output", "-o", help="'wide' (more columns, names never cut) or 'json' (for scripts)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (the same as -o json).")]


def output_format(output: str | None, as_json: bool) -> str:
    """``table``, ``wide`` or ``json`` from the ``-o``/``--json`` options.

    Raises:
        ConfigError: an unknown ``-o`` value.
    """
    if as_json:
        return "json"
    if output in (None, "table"):
        return "table"
    if output not in ("wide", "json"):
        raise ConfigError(f"--output: {output!r} is not 'wide' or 'json'")
    return output


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (paths, times and enums as strings)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def job_record(job: Job) -> dict[str, Any]:
    """A job as plain JSON-ready data (what ``--json`` prints)."""
    record = dataclasses.asdict(job)
    record["output_dir"] = job.output_dir
    return record


def _table(*columns: str, wide: bool) -> Table:
    """A table whose first column (the name) wraps instead of being cut; ``wide`` never wraps."""
    table = Table(*columns, expand=False)
    table.columns[0].overflow = "fold"
    if wide:
        for column in table.columns:
            column.no_wrap = True
    return table


def _print_table(table: Table, wide: bool) -> None:
    if wide:
        Console(width=100_000, soft_wrap=True).print(table)  # as wide as the rows are
    else:
        console.print(table)


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


def _exports(job: Job) -> list[tuple[str, Path]]:
    """The exports a job has written: adapter, merged model, loss curve, evaluation report."""
    if job.run_dir is None:
        return []
    layout = RunDir(job.run_dir)
    found = (
        ("adapter", layout.adapter),
        ("merged", layout.merged),
        ("loss curve", layout.loss_curve),
        ("evaluation", layout.evaluation_report),
    )
    return [(label, path) for label, path in found if path.exists()]


def print_outputs(job: Job) -> None:
    """The finished job's output locations (run output, adapter, merged model, loss curve)."""
    output = job.output_dir
    steps = job.progress.step if job.progress else None
    done = f"done in {steps} steps" if steps is not None else "done"
    console.print(f"[bold green]{done}[/]; outputs in {output}")
    for label, path in _exports(job):
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


def jobs(
    output: Output = None,
    as_json: Json = False,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """List jobs with their status and training progress (-o wide: run directory and message too)."""
    fmt = output_format(output, as_json)
    listed = make_client(home, backend, namespace).list_jobs()
    if fmt == "json":
        print_json([job_record(job) for job in listed])
        return
    wide = fmt == "wide"
    columns = ["NAME", "STATUS", "KIND", "NODES", "STEP", "PROGRESS", "AGE", "REASON"]
    table = _table(*columns, *(["RUN DIR", "MESSAGE"] if wide else []), wide=wide)
    for job in listed:
        step = f"{job.progress.step}/{job.progress.total_steps}" if job.progress else "-"
        ended_badly = job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUSPENDED)
        row = [
            job.name,
            job.status.value,
            job.trainer_kind,
            f"{job.num_nodes}x{job.procs_per_node}",
            step,
            describe_progress(job) or job.phase or "-",
            _age(job),
            job.reason if ended_badly else "",
        ]
        if wide:
            row += [str(job.run_dir or "-"), job.message or ""]
        table.add_row(*row)
    _print_table(table, wide)


def events(
    name: JobName,
    as_json: Json = False,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """What happened to a job, in order: status changes, steps starting and ending, warnings."""
    found = make_client(home, backend, namespace).get_job_events(name)
    if as_json:
        print_json([dataclasses.asdict(event) for event in found])
        return
    table = _table("TIME", "TYPE", "REASON", "MESSAGE", wide=False)
    for event in found:
        table.add_row(event.time.isoformat(timespec="seconds"), event.type, event.reason, event.message)
    console.print(table)


def _config_summary(job: Job) -> dict[str, Any] | None:
    """Model, dataset, method and loop of a builtin job, from the resolved ``output/config.yaml``."""
    from kubetune.spec.job import load_job_file

    config = RunDir(job.run_dir).config_file if job.run_dir is not None else None
    if job.trainer_kind != "builtin" or config is None or not config.is_file():
        return None
    try:
        trainer = load_job_file(config).trainer
    except KubetuneError:
        return None
    training = trainer.training
    return {
        "model": trainer.model.path or "<run>/model (initializer)",
        "dataset": f"{trainer.dataset.path or '<run>/dataset (initializer)'} ({trainer.dataset.format})",
        "method": trainer.method,
        "training": f"max_steps {training.max_steps}, epochs {training.epochs:g}, batch {training.batch_size}, "
        f"lr {training.learning_rate:g}, max_seq_len {training.max_seq_len}",
    }


def _evaluation_summary(progress: Progress | None) -> str | None:
    """``exact_match 0.97 | rouge_l 0.98`` from the latest scores of the job's evaluation: section."""
    if progress is None or not progress.evaluation:
        return None
    return " | ".join(f"{name} {value:.2f}" for name, value in progress.evaluation.items())


def describe(
    name: JobName,
    as_json: Json = False,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """Everything about one job: status and reason, config summary, steps, progress, outputs, events."""
    client = make_client(home, backend, namespace)
    job = client.get_job(name)
    found = client.get_job_events(name)
    outputs = client.get_job_outputs(name)
    summary = _config_summary(job)
    if as_json:
        print_json(
            {
                **job_record(job),
                "config": summary,
                "outputs": dataclasses.asdict(outputs),
                "events": [dataclasses.asdict(event) for event in found],
            }
        )
        return
    status = f"{job.status.value} ({job.reason})" if job.reason else job.status.value
    progress = job.progress
    fields = [
        ("Name", job.name),
        ("Status", status),
        ("Message", job.message),
        ("Phase", job.phase),
        ("Kind", job.trainer_kind + (f", runtime {job.runtime}" if job.runtime else "")),
        ("Nodes", f"{job.num_nodes} x {job.procs_per_node} processes"),
        ("Created", job.created_at.isoformat(timespec="seconds")),
        ("Started", job.started_at.isoformat(timespec="seconds") if job.started_at else None),
        ("Finished", job.finished_at.isoformat(timespec="seconds") if job.finished_at else None),
        (
            "Progress",
            f"step {progress.step}/{progress.total_steps} {describe_progress(job)}" if progress else None,
        ),
        ("Evaluation", _evaluation_summary(progress)),
        ("Run dir", job.run_dir),
    ]
    for label, value in fields:
        if value is not None:
            console.print(f"{label + ':':<10} {value}", highlight=False)
    if summary:
        console.print("Config:")
        for label, value in summary.items():
            console.print(f"  {label + ':':<9} {value}", highlight=False)
    console.print("Steps:")
    for step in job.steps:
        code = f" (exit {step.exit_code})" if step.exit_code is not None else ""
        console.print(f"  {step.name:<20} {step.status.value}{code}", highlight=False)
    where = ", ".join(outputs.locations) or "none yet"
    console.print(f"Outputs:   {where} ({format_size(outputs.size_bytes)})", highlight=False)
    for label, path in _exports(job):
        console.print(f"  {label + ':':<11} {path}", highlight=False)
    console.print("Events:")
    for event in found:
        stamp = event.time.isoformat(timespec="seconds")
        console.print(f"  {stamp}  {event.type:<7} {event.reason:<18} {event.message}", highlight=False)


def logs(
    name: JobName,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    step: Annotated[
        str, typer.Option(help="model-initializer, dataset-initializer, node-0, node-1..., exporter or supervisor.")
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
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (default: wait).")] = None,
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


RUNTIME_FIELDS = (
    "name",
    "family",
    "method",
    "model_uri",
    "description",
    "image",
    "num_nodes",
    "procs_per_node",
    "resources_per_node",
)


def runtimes(
    output: Output = None,
    as_json: Json = False,
    home: Home = None,
    backend: Backend = "local",
    namespace: Namespace = None,
) -> None:
    """List the runtimes from the catalog: model family, method, model and default scale (-o wide: image too)."""
    fmt = output_format(output, as_json)
    listed = make_client(home, backend, namespace).list_runtimes()
    if fmt == "json":
        print_json([{key: getattr(runtime, key) for key in RUNTIME_FIELDS} for runtime in listed])
        return
    wide = fmt == "wide"
    columns = ["NAME", "FAMILY", "METHOD", "MODEL", "NODES", "PROCS/NODE", "GPUS/NODE"]
    table = _table(*columns, *(["IMAGE", "DESCRIPTION"] if wide else []), wide=wide)
    for runtime in listed:
        limits = runtime.resources_per_node.get("limits") or {}
        row = [
            runtime.name,
            runtime.family or "-",
            runtime.method,
            runtime.model_uri or "-",
            str(runtime.num_nodes),
            str(runtime.procs_per_node),
            str(limits.get("nvidia.com/gpu", 0)),
        ]
        if wide:
            row += [runtime.image or "-", runtime.description]
        table.add_row(*row)
    _print_table(table, wide)
