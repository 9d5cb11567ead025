"""Everything is checked before launch: `kubetune validate` runs `train`'s checks and reports every problem;
the run directory, LoRA target modules and an initializer's local source are checked too; the SDK's typed
configs raise kubetune's one-line ConfigError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.backends.local import LocalBackend
from kubetune.client import BuiltinTrainer, Initializer, LLMConfig, Name, TrainerClient
from kubetune.errors import ConfigError, DataError
from kubetune.spec.job import JobSpec
from tests.bad_inputs.test_corpus import GOOD_ROWS, base_job, jsonl


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KUBETUNE_HOME": str(home), "COLUMNS": "1000"},
    )


def write_job(tmp_path: Path, job: dict) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


def test_validate_reports_every_problem_not_only_the_first(tmp_path, isolated_kubetune_home):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    empty_folder = tmp_path / "no-data"
    empty_folder.mkdir()
    job = base_job(tmp_path / "no-model", empty_folder, blocker / "run")
    job["resources"] = {"gpu": 64}

    result = cli(isolated_kubetune_home, "validate", "-f", str(write_job(tmp_path, job)))

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: resources.gpu: 64 GPUs per node requested, this machine has 0",
        f"error: trainer.model.path: model not found: {tmp_path / 'no-model'}",
        f"error: {empty_folder}: no dataset files (.jsonl, .json, .csv, .parquet, .txt) in this folder",
        f"error: output_dir: {blocker / 'run'} is under a file ({blocker}); choose a folder",
    ]
    assert result.stdout == ""


def test_validate_passes_a_good_job(tmp_path, isolated_kubetune_home, tiny_model_dir):
    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl(GOOD_ROWS))
    job = write_job(tmp_path, base_job(tiny_model_dir, data, tmp_path / "run"))
    result = cli(isolated_kubetune_home, "validate", "-f", str(job))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"ok: {job} (lora fine-tune)"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_unwritable_output_dir_is_one_line_exit_2(tmp_path, isolated_kubetune_home, tiny_model_dir, where):
    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl(GOOD_ROWS))
    if where == "proc":
        run, expected = (
            Path("/proc/kubetune-run"),
            "output_dir: cannot write to /proc/kubetune-run (/proc is not writable)",
        )
    else:
        (tmp_path / "a-file").write_text("x")
        run = tmp_path / "a-file" / "run"
        expected = f"output_dir: {run} is under a file ({tmp_path / 'a-file'}); choose a folder"
    job = write_job(tmp_path, base_job(tiny_model_dir, data, run))
    result = cli(isolated_kubetune_home, "train", "-f", str(job))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {expected}"]
    assert LocalBackend(isolated_kubetune_home).list_jobs() == []


@pytest.mark.parametrize("command", ["validate", "train"])
def test_lora_target_modules_the_model_lacks_are_refused_before_launch(
    tmp_path, isolated_kubetune_home, tiny_model_dir, command
):
    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl(GOOD_ROWS))
    job = base_job(tiny_model_dir, data, tmp_path / "run")
    job["trainer"]["lora"]["target_modules"] = ["q_proj", "qkv_proj", "c_attn"]
    result = cli(isolated_kubetune_home, command, "-f", str(write_job(tmp_path, job)))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: trainer.lora.target_modules: 'qkv_proj', 'c_attn' not in the model {tiny_model_dir} (its linear "
        "layers: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj)"
    ]
    assert not (tmp_path / "run").exists()


def test_initializer_dataset_is_checked_at_the_users_file(tmp_path, tiny_model_dir):
    data = tmp_path / "mine.jsonl"
    data.write_bytes(jsonl([GOOD_ROWS[0], {"instruction": 5, "output": "x"}]))
    backend = LocalBackend(tmp_path / "home")
    config = LLMConfig.model_validate(
        {"model": {"path": str(tiny_model_dir)}, "lora": {"target_modules": ["q_proj", "v_proj"]}}
    )
    with pytest.raises(DataError) as caught:
        TrainerClient(backend).train(
            trainer=BuiltinTrainer(config=config), initializer=Initializer(dataset=str(data)), options=[Name("src")]
        )
    assert str(caught.value) == f"{data}:2: column 'instruction' is a number (5); format 'alpaca' needs text there"
    assert backend.list_jobs() == []


def test_llm_config_built_directly_raises_a_one_line_config_error():
    with pytest.raises(ConfigError) as caught:
        LLMConfig(training={"learning_rate": 0}, lora={"r": "four"})
    assert str(caught.value) == (
        "invalid LLMConfig: lora.r: Input should be a valid integer, unable to parse string as an integer "
        "(got 'four'); training.learning_rate: Input should be greater than 0 (got 0)"
    )


def test_too_little_free_disk_for_the_outputs_is_refused_before_launch(tmp_path, tiny_model_dir, monkeypatch):
    import shutil

    import kubetune.backends.local.backend as local_backend

    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl(GOOD_ROWS))
    job = base_job(tiny_model_dir, data, tmp_path / "run")
    job["trainer"]["method"] = "full"
    del job["trainer"]["lora"]
    job["trainer"]["training"].update(checkpoint_every=1, keep_checkpoints=2)
    spec = JobSpec.model_validate(job)
    weights = sum(f.stat().st_size for f in tiny_model_dir.iterdir())
    need = weights + 3 * weights * 2  # merged model + (weights + two Adam moments) per kept checkpoint
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(local_backend.shutil, "disk_usage", lambda _: usage._replace(free=need - 1))
    backend = LocalBackend(tmp_path / "home")
    assert [str(problem) for problem in backend.problems(spec)] == [
        f"output_dir: {tmp_path / 'run'} has {(need - 1) / 2**20:,.1f} MiB free; this job writes about "
        f"{need / 2**20:,.1f} MiB (merged model, checkpoints)"
    ]
    monkeypatch.setattr(local_backend.shutil, "disk_usage", lambda _: usage._replace(free=need))
    assert backend.problems(spec) == []
