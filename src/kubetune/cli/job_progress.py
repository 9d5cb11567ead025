"""A live view of a running job: status, a step progress bar with loss, tokens/s and ETA."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from kubetune.client import Job, JobStatus, TrainerClient
from kubetune.contracts.progress import Phase
from kubetune.errors import JobTimeoutError
from kubetune.trainer.metrics import format_duration


def describe_progress(job: Job) -> str:
    """``loss 0.4123 | eval 0.4410 | 812 tok/s | eta 1m05s`` from the job's last logged step (empty before step 1).

    The objective's own values (``reward_margin 0.31``...) and the latest scores of the job's
    ``evaluation:`` section (``exact_match 0.97``...) follow the losses.
    """
    progress = job.progress
    if progress is None:
        return ""
    parts = []
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.4f}")
    if progress.eval_loss is not None:
        parts.append(f"eval {progress.eval_loss:.4f}")
    parts.extend(f"{name} {value:.4g}" for name, value in progress.objective.items())
    parts.extend(f"{name} {value:.2f}" for name, value in progress.evaluation.items())
    if progress.tokens_per_s is not None:
        parts.append(f"{progress.tokens_per_s:,.0f} tok/s")
    if progress.eta_s is not None:
        parts.append(f"eta {format_duration(progress.eta_s)}")
    return " | ".join(parts)


def follow_job(
    client: TrainerClient, name: str, console: Console, deadline_s: float | None = None, poll_s: float = 1.0
) -> Job:
    """Show a live progress bar until the job ends or is suspended; returns the job then.

    Ctrl-C stops watching (exit code 130), never the job, which runs detached.

    Raises:
        JobTimeoutError: ``deadline_s`` seconds passed first.
    """
    try:
        return _follow(client, name, console, deadline_s, poll_s)
    except KeyboardInterrupt:
        console.print(f"stopped watching; {name} keeps running (`kubetune wait {name}`, `kubetune delete {name}`)")
        raise typer.Exit(130) from None


def _follow(client: TrainerClient, name: str, console: Console, deadline_s: float | None, poll_s: float) -> Job:
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    with Progress(
        TextColumn("[bold]{task.fields[job]}[/] {task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("job", total=None, job=name, status="", detail="")
        while True:
            job = client.get_job(name)
            total = job.progress.total_steps if job.progress else None
            completed = job.progress.step if job.progress else 0
            shown = job.phase not in (None, Phase.TRAINING.value)
            status = f"{job.status.value}: {job.phase}" if shown else job.status.value
            bar.update(task, total=total, completed=completed, status=status, detail=describe_progress(job))
            if job.status.is_terminal or job.status == JobStatus.SUSPENDED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeoutError(f"job {name!r} is still {job.status.value} after {deadline_s:g}s")
            time.sleep(poll_s)
