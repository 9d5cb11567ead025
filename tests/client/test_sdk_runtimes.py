"""Runtimes through the SDK on the local backend: the catalog is listed, and a job naming one gets its defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune.client import CustomTrainer, Initializer, JobStatus, Name, Runtime, TrainerClient
from kubetune.errors import ConfigError
from kubetune.runtimes import Runtime as CatalogRuntime


def worker_threads() -> str:
    """Report the thread count the local backend gave this worker (cpu / procs_per_node)."""
    return os.environ["OMP_NUM_THREADS"]


def a_model_folder(tmp_path: Path) -> Path:
    """A local folder for the model initializer to copy (a custom function does not load it)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_runtimes_are_the_catalogs_typed_runtimes(client: TrainerClient):
    runtimes = client.list_runtimes()
    assert Runtime is CatalogRuntime
    assert {r.family for r in runtimes} >= {"llama", "qwen", "smollm"}
    runtime = client.get_runtime("smollm2-135m-lora")
    assert (runtime.method, runtime.model_uri) == ("lora", "hf://HuggingFaceTB/SmolLM2-135M-Instruct")


def test_a_job_gets_its_runtimes_defaults_under_its_own_fields(client: TrainerClient, tmp_path: Path):
    model = a_model_folder(tmp_path)
    name = client.train(
        runtime="smollm2-135m-lora",  # 1 node x 1 proc, cpu "4"
        initializer=Initializer(model=str(model)),  # the job's model: the runtime's hf:// one is not added
        trainer=CustomTrainer(func=worker_threads),
        options=[Name("with-runtime")],
    )
    job = client.wait_for_job_status(name, timeout=120, polling_interval=0.3)
    assert (job.runtime, job.num_nodes, job.procs_per_node) == ("smollm2-135m-lora", 1, 1)
    assert [step.name for step in job.steps] == ["model-initializer", "node-0"]
    assert client.get_job_return_values(name) == {0: "4"}


def test_user_scale_wins_over_the_runtime(client: TrainerClient, tmp_path: Path):
    model = a_model_folder(tmp_path)
    name = client.train(
        runtime="smollm2-135m-lora",
        initializer=Initializer(model=str(model)),
        trainer=CustomTrainer(func=worker_threads, procs_per_node=2, resources_per_node={"cpu": 2}),
    )
    job = client.wait_for_job_status(name, timeout=120, polling_interval=0.3)
    assert job.status == JobStatus.COMPLETE and job.procs_per_node == 2
    assert client.get_job_return_values(name) == {0: "1", 1: "1"}


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ("smollm2-135m-lorra", r"unknown runtime 'smollm2-135m-lorra'; did you mean smollm2-135m-lora"),
        ("qwen2.5-0.5b-qlora", r"resources\.gpu: 1 GPUs per node requested, this machine has 0"),
    ],
)
def test_bad_runtime_is_refused_before_anything_starts(client: TrainerClient, backend, runtime, message):
    with pytest.raises(ConfigError, match=message):
        client.train(runtime=runtime, trainer=CustomTrainer(func=worker_threads), options=[Name("bad")])
    assert backend.list_jobs() == []


def test_cli_lists_family_method_and_model(tmp_path: Path):
    env = {**os.environ, "KUBETUNE_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "runtimes"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "llama3.1-8b-full" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == ["llama3.1-8b-full", "llama", "full", "hf://meta-llama/Llama-3.1-8B-Instruct", "2", "8", "8"]
