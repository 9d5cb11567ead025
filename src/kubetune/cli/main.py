"""``kubetune`` commands. User errors print one line and exit non-zero, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from kubetune.cli import jobs as job_commands
from kubetune.cli.console import console, err_console
from kubetune.errors import KubetuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune LLMs, locally or on Kubernetes.")

JobFile = Annotated[Path, typer.Option("--file", "-f", help="Job YAML file.", dir_okay=False)]


def fail(err: KubetuneError) -> typer.Exit:
    """Print a user error as one line; the caller raises the returned Exit."""
    err_console.print(f"[bold red]error:[/] {err}", highlight=False)
    return typer.Exit(err.exit_code)


def user_errors(command: Callable) -> Callable:
    """Turn a command's :class:`KubetuneError` into one printed line and its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KubetuneError as err:
            raise fail(err) from None

    return wrapper


@app.command()
def validate(
    file: JobFile,
    gpu_memory: Annotated[
        float, typer.Option("--gpu-memory", min=1, help="GiB of one GPU to plan memory for (80 GB H100: 79).")
    ] = 79.0,
) -> None:
    """Check a job file without running anything, and print its memory plan per GPU.

    The plan needs the model's sizes: a local model folder's config.json, or a catalog runtime.
    A plan that cannot fit the GPU is an error saying by how much and what to change.
    """
    from kubetune.cli.plan import job_plan
    from kubetune.spec.job import load_job_file

    try:
        spec = load_job_file(file)
        plan = job_plan(spec, gpu_memory)
    except KubetuneError as err:
        raise fail(err) from None
    console.print(f"[green]ok[/]: {file} ({spec.trainer.method} fine-tune)")
    console.print(plan, highlight=False)


@app.command()
@user_errors
def train(
    file: JobFile,
    output_dir: Annotated[Path | None, typer.Option(help="Run directory (overrides output_dir).")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Submit and return at once.")] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="First delete a finished job of the same name (its outputs stay).")
    ] = False,
    home: job_commands.Home = None,
    backend: job_commands.Backend = "local",
    namespace: job_commands.Namespace = None,
) -> None:
    """Submit the job file (local backend by default) and follow it with a progress bar until it ends.

    The job runs detached either way: Ctrl-C stops watching, not training (`kubetune wait NAME`).
    """
    from kubetune.cli.job_progress import follow_job
    from kubetune.spec.job import load_job_file

    spec = load_job_file(file)
    if output_dir is not None:
        spec = spec.model_copy(update={"output_dir": str(output_dir.resolve())})
    client = job_commands.make_client(home, backend, namespace)
    if replace and spec.name is not None:
        job_commands.delete_finished(client, spec.name)
    name = client.train_from_spec(spec)
    if detach:
        console.print(f"submitted [bold]{name}[/]; follow it with `kubetune wait {name}` or `kubetune logs {name} -f`")
        return
    job = follow_job(client, name, console)
    raise typer.Exit(job_commands.report_end(job))


for _command in (
    job_commands.jobs,
    job_commands.logs,
    job_commands.wait,
    job_commands.suspend,
    job_commands.resume,
    job_commands.delete,
    job_commands.runtimes,
):
    app.command()(user_errors(_command))


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()
