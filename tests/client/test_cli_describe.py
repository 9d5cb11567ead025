"""The CLI fits people's habits: --version, -o wide / --json, describe, events, and the phase shown before step 1."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tests.bad_inputs.test_corpus import GOOD_ROWS, base_job, jsonl
from tests.client.test_sdk_cli_jobs import kubetune as cli

import kubetune
from kubetune.backends.local import LocalBackend
from kubetune.client import CustomTrainer, Name, TrainerClient
from kubetune.contracts.progress import Phase, read_phase
from kubetune.contracts.run_dir import PHASE_FILE_NAME

LONG_NAME = "a-job-name-long-enough-to-be-cut-in-an-eighty-column-terminal-x"  # 63 characters


def double(x: int) -> int:
    return 2 * x


def _finished_job(home: Path, name: str = LONG_NAME) -> TrainerClient:
    client = TrainerClient(LocalBackend(home))
    client.train(trainer=CustomTrainer(func=double, func_args={"x": 21}), options=[Name(name)])
    client.wait_for_job_status(name, timeout=120, polling_interval=0.2)
    return client


def test_version(tmp_path: Path):
    result = cli(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kubetune {kubetune.__version__}"


def test_jobs_json_and_wide_never_cut_names(tmp_path: Path):
    home = tmp_path / "home"
    _finished_job(home)

    listed = json.loads(cli(home, "jobs", "--json").stdout)
    assert [job["name"] for job in listed] == [LONG_NAME]
    assert listed[0]["status"] == "Complete" and listed[0]["run_dir"] == str(home / "runs" / LONG_NAME)
    assert json.loads(cli(home, "jobs", "-o", "json").stdout) == listed

    narrow = cli(home, "jobs", "-o", "wide")  # COLUMNS=200 in cli(); wide ignores it anyway
    assert LONG_NAME in narrow.stdout and str(home / "runs" / LONG_NAME) in narrow.stdout

    assert cli(home, "jobs", "-o", "yaml").stderr.strip() == "error: --output: 'yaml' is not 'wide' or 'json'"


def test_runtimes_json_lists_the_catalog(tmp_path: Path):
    runtimes = json.loads(cli(tmp_path, "runtimes", "--json").stdout)
    names = [runtime["name"] for runtime in runtimes]
    assert "smollm2-135m-lora" in names and names == sorted(names)
    assert {"family", "method", "model_uri", "image", "num_nodes", "procs_per_node"} <= set(runtimes[0])


def test_describe_and_events(tmp_path: Path):
    home = tmp_path / "home"
    client = _finished_job(home, "told")

    described = cli(home, "describe", "told")
    assert described.returncode == 0, described.stderr
    lines = described.stdout.splitlines()
    assert "Name:      told" in lines and "Status:    Complete (Succeeded)" in lines
    assert "  node-0               Succeeded (exit 0)" in lines
    assert any(line.startswith(f"Outputs:   {home / 'runs' / 'told'} (") for line in lines)
    assert "Events:" in lines and any("Created" in line for line in lines)

    data = json.loads(cli(home, "describe", "told", "--json").stdout)
    assert data["name"] == "told" and data["outputs"]["locations"] == [str(home / "runs" / "told")]
    assert [event["reason"] for event in data["events"]] == [e.reason for e in client.get_job_events("told")]

    events = json.loads(cli(home, "events", "told", "--json").stdout)
    assert events == data["events"]
    table = cli(home, "events", "told")
    assert "REASON" in table.stdout and "Created" in table.stdout

    missing = cli(home, "describe", "nope")
    assert missing.returncode == 2 and "no job named 'nope'" in missing.stderr


def test_the_trainer_records_its_phases_before_and_after_the_steps(tmp_path: Path, tiny_model_dir, monkeypatch):
    """The typed phase record rank 0 writes: loading, tokenizing N rows, training, exporting (in that order)."""
    import kubetune.trainer.run as run_module
    from kubetune.spec.job import JobSpec

    seen: list[str] = []
    real = run_module.write_phase

    def recording(output_dir: Path, phase: Phase, detail: str | None = None):
        record = real(output_dir, phase, detail)
        assert read_phase(output_dir) == record  # what a watcher reads back
        seen.append(record.describe())
        return record

    monkeypatch.setattr(run_module, "write_phase", recording)
    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl(GOOD_ROWS))
    run = tmp_path / "run"
    (run / "output").mkdir(parents=True)  # as a backend makes it before launch
    job = base_job(tiny_model_dir, data, run)
    job["trainer"]["training"]["max_steps"] = 1
    job["trainer"]["output"] = {"save_merged": False}
    run_module.run_training(JobSpec.model_validate(yaml.safe_load(yaml.safe_dump(job))), run)

    assert seen == ["loading model tokenizer", "tokenizing 4 rows", "loading model weights", "training", "exporting"]
    assert (run / "output" / PHASE_FILE_NAME).is_file()
