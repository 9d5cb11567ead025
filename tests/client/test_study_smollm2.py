"""A hyperparameter study end to end on the real SmolLM2-135M: trials are local jobs, the pruner
stops bad ones early, and a study whose tuning process is killed resumes without repeating trials.

One study serves every assertion (CI budget): ``kubetune tune -f`` runs in a subprocess and is
killed with SIGKILL once a trial has finished; ``OptimizerClient.optimize`` then resumes the
same study from Python until its 6 trials are done. The task (a made-up code per word, 24 rows,
6 held out for eval loss) is one the model cannot guess: a learning rate of 1e-5 leaves the
eval loss where it started (~8.2), a few 1e-3 bring it down by nats within 4 LoRA steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kubetune.backends.local import LocalBackend
from kubetune.backends.local.backend import job_processes, job_tag
from kubetune.cli.main import app
from kubetune.client import JobStatus, OptimizerClient

STUDY = "lr"
N_TRIALS = 6
MARGIN = 1.0  # nats of eval loss between the best trial and the worst


def write_task(folder: Path) -> Path:
    """24 prompt/completion rows: a word and a code made of it (upper case, reversed)."""
    words = ["zorp", "blick", "quarn", "flem", "drab", "skiv", "wub", "trel"]
    path = folder / "codes.jsonl"
    with path.open("w") as handle:
        for i in range(24):
            word = words[(i * 5) % len(words)]
            handle.write(json.dumps({"prompt": f"Code for {word}:", "completion": f"{word.upper()} {word[::-1]}"}))
            handle.write("\n")
    return path


def write_study(folder: Path, model: Path, dataset: Path) -> Path:
    job = {
        "trainer": {
            "model": {"path": str(model)},
            "dataset": {"path": str(dataset), "format": "completion", "eval_fraction": 0.25},
            "method": "lora",
            "lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {
                "max_steps": 4,
                "batch_size": 4,
                "max_seq_len": 32,
                "eval_every": 2,
                "lr_scheduler": "constant",
                "checkpoint_every": None,
            },
            "output": {"save_merged": False},
        }
    }
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    study = {
        "name": STUDY,
        "job": "job.yaml",
        "search_space": {"training.learning_rate": "loguniform(1e-6, 1e-2)"},
        "objective": {"metric": "eval_loss", "direction": "minimize"},
        "n_trials": N_TRIALS,
        "parallel": 2,
        # Seeded per trial: the learning rates are 1.6e-4, 7.4e-3, 7.7e-6, 3.7e-3, 2.0e-6, 3.1e-3.
        "sampler": {"type": "tpe", "seed": 3},
        "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 1},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, smollm2_dir):
    """The study run twice: the CLI killed after its first finished trial, then resumed from Python."""
    folder = tmp_path_factory.mktemp("study")
    home = folder / "home"
    study_file = write_study(folder, smollm2_dir, write_task(folder))
    client = OptimizerClient(home=home)
    cli = subprocess.Popen(
        [sys.executable, "-m", "kubetune.cli", "tune", "-f", str(study_file), "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    before = None
    while time.monotonic() < deadline and cli.poll() is None:
        if STUDY in client.list_studies():
            before = client.get_study(STUDY, plot=False)
            if any(t.status in ("complete", "pruned") for t in before.trials):
                break
        time.sleep(0.5)
    assert cli.poll() is None, f"the tuning process ended before it was killed:\n{cli.stdout.read()}"
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    before = client.get_study(STUDY, plot=False)
    backend = LocalBackend(home)
    created_before = {job.name: job.created_at for job in backend.list_jobs()}
    after = client.optimize(study_file)
    for trial in after.trials:  # shown with -s: the figures the docs quote
        print(trial.number, trial.params, trial.status, trial.value, trial.last_step, trial.last_value, trial.reason)
    yield {"before": before, "after": after, "created_before": created_before, "backend": backend, "home": home}
    for job in backend.list_jobs():
        backend.delete_job(job.name)


def test_resumed_study_keeps_finished_trials_and_runs_each_trial_once(study_run):
    before, after, backend = study_run["before"], study_run["after"], study_run["backend"]
    finished_before = {t.number: t for t in before.trials if t.status != "running"}
    assert finished_before, "no trial had finished when the tuning process was killed"
    assert len(before.trials) < N_TRIALS
    counted = [t for t in after.trials if t.reason != "NotSubmitted"]
    assert len(counted) == N_TRIALS and all(t.status != "running" for t in after.trials)
    for number, trial in finished_before.items():  # kept as they were, not run again
        again = after.trials[number]
        assert (again.status, again.value, again.params) == (trial.status, trial.value, trial.params)
    jobs = {job.name: job for job in backend.list_jobs()}
    assert sorted(jobs) == sorted(t.job for t in counted)
    for name, created in study_run["created_before"].items():  # a job is submitted once, ever
        assert jobs[name].created_at == created
    listed = CliRunner().invoke(app, ["jobs", "--home", str(study_run["home"]), "-o", "wide"])
    assert listed.exit_code == 0 and all(f"{STUDY}-{t.number}" in listed.output for t in counted)


def test_the_best_trial_beats_the_smallest_learning_rate_by_the_margin(study_run):
    after = study_run["after"]
    # A pruned trial's score is its last eval loss; a trial killed before its job started has none.
    scored = {t.number: t.value if t.value is not None else t.last_value for t in after.trials}
    trials = [t for t in after.trials if scored[t.number] is not None]
    smallest = min(trials, key=lambda t: t.params["training.learning_rate"])
    best = after.best
    scores = [(t.params["training.learning_rate"], t.status, scored[t.number]) for t in after.trials]
    assert best is not None and best.value <= scored[smallest.number] - MARGIN, scores
    assert all(best.value <= scored[t.number] for t in trials), scores
    assert best.params["training.learning_rate"] > 100 * smallest.params["training.learning_rate"]
    assert (Path(best.output) / "adapter" / "adapter_config.json").is_file()


def test_pruning_stops_a_bad_trial_early_and_cancels_its_job(study_run):
    after, backend = study_run["after"], study_run["backend"]
    pruned = [t for t in after.trials if t.status == "pruned"]
    assert pruned, [(t.number, t.status, t.last_value) for t in after.trials]
    for trial in pruned:
        job = backend.get_job(trial.job)
        assert job.status == JobStatus.CANCELLED and job.reason == "Pruned"
        assert trial.reason == "Pruned" and "median pruner at step" in trial.message
        # Pruned on an intermediate eval; the worker may finish the step it is in (on a loaded machine it
        # can reach the last one before the stop arrives) but never exports.
        assert trial.last_step < job.progress.total_steps
        assert not (job.output_dir / "adapter").exists()
        assert not job_processes(job_tag(backend.home, job.name, job.created_at))  # its processes are gone


def test_study_command_shows_trials_best_output_and_plot(study_run):
    shown = CliRunner().invoke(app, ["study", STUDY, "--home", str(study_run["home"]), "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert [t["number"] for t in data["trials"]] == [t.number for t in study_run["after"].trials]
    assert data["best"]["job"] == study_run["after"].best.job
    plot = Path(data["plot"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.parent.name == STUDY
