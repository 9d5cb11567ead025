"""``kubetune`` commands. User errors print one line and exit non-zero, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from kubetune.cli import after_training
from kubetune.cli import jobs as job_commands
from kubetune.cli import study as study_commands
from kubetune.cli.console import console, err_console
from kubetune.errors import KubetuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune LLMs, locally or on Kubernetes.")


def _print_version(wanted: bool) -> None:
    if wanted:
        from kubetune import __version__

        typer.echo(f"kubetune {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Fine-tune LLMs, locally or on Kubernetes."""


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
    output_dir: Annotated[Path | None, typer.Option(help="Run directory (overrides output_dir).")] = None,
    home: job_commands.Home = None,
    gpu_memory: Annotated[
        float, typer.Option("--gpu-memory", min=1, help="GiB of one GPU to plan memory for (80 GB H100: 79).")
    ] = 79.0,
) -> None:
    """Run every check `kubetune train` runs before launch, start nothing, and print each problem found.

    The job file, runtime, GPUs, initializer sources, model files, dataset files, format and a
    sample of rows (column types, chat turns, rows left without a target token), LoRA target
    modules, the run directory (writable, free disk), and the memory plan per GPU (printed when all
    pass). Exit 0 when all pass, else 2.
    """
    from kubetune.backends.local import LocalBackend
    from kubetune.cli.plan import job_plan
    from kubetune.runtimes import apply_runtime
    from kubetune.spec.job import load_job_file

    try:
        spec = load_job_file(file)
        loaded = spec
        if output_dir is not None:
            spec = spec.model_copy(update={"output_dir": str(output_dir.resolve())})
        backend = LocalBackend(home)
        if spec.runtime is not None:
            spec = apply_runtime(spec, backend.get_runtime(spec.runtime))
    except KubetuneError as err:
        raise fail(err) from None
    problems = backend.problems(spec)
    plan = None
    if not problems:  # the plan reads the same model: its problems are already reported
        try:
            plan = job_plan(loaded, gpu_memory)
        except KubetuneError as err:
            problems.append(err)
    for problem in problems:
        err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(max(problem.exit_code for problem in problems))
    what = f"{spec.trainer.method} fine-tune" if spec.trainer_kind == "builtin" else "custom trainer"
    console.print(f"[green]ok[/]: {file} ({what})", highlight=False, soft_wrap=True)
    console.print(plan, highlight=False)


@app.command()
@user_errors
def train(
    file: JobFile,
    output_dir: Annotated[Path | None, typer.Option(help="Run directory (overrides output_dir).")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Submit and return at once.")] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Rerun a finished job of the same name afresh; its outputs are kept in output.prev-<time>/.",
        ),
    ] = False,
    home: job_commands.Home = None,
    backend: job_commands.Backend = "local",
    namespace: job_commands.Namespace = None,
    strict_tracking: Annotated[
        bool,
        typer.Option(
            "--strict-tracking",
            help="Fail the job when a tracker of trainer.report_to is unreachable (before training when it is "
            "down at the start) instead of warning and retrying (sets trainer.strict_tracking).",
        ),
    ] = False,
) -> None:
    """Submit the job file (local backend by default) and follow it with a progress bar until it ends.

    The job runs detached either way: Ctrl-C stops watching, not training (`kubetune wait NAME`).
    """
    from kubetune.cli.job_progress import follow_job
    from kubetune.spec.job import load_job_file

    spec = load_job_file(file)
    if output_dir is not None:
        spec = spec.model_copy(update={"output_dir": str(output_dir.resolve())})
    if strict_tracking:
        spec.trainer.strict_tracking = True
    client = job_commands.make_client(home, backend, namespace)
    if replace:
        moved = client.prepare_replacement(spec)
        if moved is not None:
            console.print(f"earlier outputs kept in {moved}", soft_wrap=True, highlight=False)
    name = client.train_from_spec(spec)
    if detach:
        console.print(f"submitted [bold]{name}[/]; follow it with `kubetune wait {name}` or `kubetune logs {name} -f`")
        return
    job = follow_job(client, name, console)
    raise typer.Exit(job_commands.report_end(job))


@app.command()
@user_errors
def ui(
    host: Annotated[
        str, typer.Option(help="Interface to listen on; anything but loopback is reachable from other machines.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8265,
    home: job_commands.Home = None,
    backend: job_commands.Backend = "local",
    namespace: job_commands.Namespace = None,
) -> None:
    """Serve the web dashboard (jobs, live loss curves, logs, runtimes) until Ctrl-C.

    Prints the URL to open; its token, new at every start, is needed for every API call.
    """
    from kubetune.ui.server import serve

    serve(job_commands.make_client(home, backend, namespace), host, port)


for _command in (
    job_commands.jobs,
    job_commands.describe,
    job_commands.events,
    job_commands.logs,
    job_commands.wait,
    job_commands.suspend,
    job_commands.resume,
    job_commands.delete,
    job_commands.runtimes,
    study_commands.tune,
    study_commands.study,
):
    app.command()(user_errors(_command))
app.command("eval")(user_errors(after_training.evaluate))
app.command()(user_errors(after_training.generate))
app.command()(user_errors(after_training.chat))


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()
