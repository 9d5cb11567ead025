"""Study commands: ``kubetune tune -f study.yaml`` runs (or resumes) a hyperparameter study,
``kubetune study NAME`` shows its trials, the best one and where its plot is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kubetune.cli import jobs as job_commands
from kubetune.cli.console import console
from kubetune.client import OptimizerClient, StudyResult, TrialResult
from kubetune.client.optimizer_client import NOT_SUBMITTED

StudyFile = Annotated[Path, typer.Option("--file", "-f", help="Study YAML file.", dir_okay=False)]


def tune(
    file: StudyFile,
    home: job_commands.Home = None,
    backend: job_commands.Backend = "local",
    namespace: job_commands.Namespace = None,
) -> None:
    """Run a hyperparameter study: each trial is a job named <study>-<n> (see `kubetune jobs`).

    Running it again resumes it: finished trials are kept, running ones are followed, only the
    missing trials start. Prints one line per trial event, then the trials table.
    """
    import optuna

    from kubetune.client.study_spec import load_study_file

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_study_file(file)
    if backend == "local" and namespace is not None:
        job_commands.make_client(home, backend, namespace)  # refuses --namespace with one line
    options = {"namespace": namespace} if backend == "kubernetes" else {}
    client = OptimizerClient(backend, home=home, **options)
    result = client.optimize(spec, progress=lambda line: console.print(line, highlight=False, soft_wrap=True))
    print_study(result)


def study(
    name: Annotated[str, typer.Argument(help="Study name.")],
    home: job_commands.Home = None,
    output: job_commands.Output = None,
    as_json: job_commands.Json = False,
) -> None:
    """Show a study: its trials (params, objective, status, duration), the best trial and its
    output folder, and the plot it (re)draws next to the study (history.png)."""
    result = OptimizerClient(home=home).get_study(name)
    if job_commands.output_format(output, as_json) == "json":
        job_commands.print_json(result.to_json())
        return
    print_study(result)


def print_study(result: StudyResult) -> None:
    """The trials table, then the best trial and the plot's path."""
    params = list(result.search_space)
    table = Table("trial", "job", "status", *params, result.metric, "duration", "note", expand=False)
    for trial in result.trials:
        table.add_row(
            str(trial.number),
            trial.job or "-",
            trial.status,
            *(_value(trial.params.get(p)) for p in params),
            _objective(trial),
            "-" if trial.duration_s is None else f"{trial.duration_s:.0f}s",
            _note(trial),
        )
    console.print(table)
    done = sum(t.status != "running" and t.reason != NOT_SUBMITTED for t in result.trials)
    console.print(f"study {result.name}: {done} of {result.n_trials} trials done ({result.direction} {result.metric})")
    if result.best is not None:
        best = result.best
        console.print(
            f"best: trial {best.number} ({best.job}), {result.metric} {best.value:.6g}, "
            f"{', '.join(f'{p}={_value(v)}' for p, v in best.params.items())}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"best output: {best.output}", highlight=False, soft_wrap=True)
    if result.plot is not None:
        console.print(f"plot: {result.plot}", highlight=False, soft_wrap=True)


def _value(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _note(trial: TrialResult) -> str:
    if trial.status == "failed":
        return f"{trial.reason}: {trial.message}" if trial.message else trial.reason or ""
    return trial.reason or ""


def _objective(trial: TrialResult) -> str:
    if trial.value is not None:
        return f"{trial.value:.6g}"
    if trial.last_value is not None:
        return f"({trial.last_value:.4g} at step {trial.last_step})"
    return "-"
