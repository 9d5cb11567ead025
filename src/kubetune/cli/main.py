"""``kubetune`` commands. User errors print one line and exit non-zero, without a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kubetune.errors import KubetuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune LLMs, locally or on Kubernetes.")
err_console = Console(stderr=True, soft_wrap=True)
console = Console(soft_wrap=True)

JobFile = Annotated[Path, typer.Option("--file", "-f", help="Job YAML file.", dir_okay=False)]


def fail(err: KubetuneError) -> typer.Exit:
    """Print a user error as one line; the caller raises the returned Exit."""
    err_console.print(f"[bold red]error:[/] {err}", highlight=False)
    return typer.Exit(err.exit_code)


@app.command()
def validate(file: JobFile) -> None:
    """Check a job file without running anything."""
    from kubetune.spec.job import load_job_file

    try:
        spec = load_job_file(file)
    except KubetuneError as err:
        raise fail(err) from None
    console.print(f"[green]ok[/]: {file} ({spec.trainer.method} fine-tune)")


@app.command()
def train(
    file: JobFile,
    output_dir: Annotated[Path | None, typer.Option(help="Run directory (overrides output_dir).")] = None,
) -> None:
    """Fine-tune as the job file says, in this process, and print where the outputs are."""
    from kubetune.local_run import fine_tune

    try:
        result = fine_tune(file, output_dir=output_dir)
    except KubetuneError as err:
        raise fail(err) from None
    console.print(f"[bold green]done[/] in {result.steps} steps; outputs in {result.output_dir}")
    if result.adapter_dir:
        console.print(f"  adapter: {result.adapter_dir}")
    if result.merged_dir:
        console.print(f"  merged:  {result.merged_dir}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()
