"""A trained model is never lost: `delete` keeps a job's outputs, `--purge` removes them only when asked
(size shown, confirmation), and `train --replace` moves the earlier outputs aside instead of deleting them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.bad_inputs.test_corpus import GOOD_ROWS, jsonl
from tests.client.test_sdk_cli_jobs import kubetune

from kubetune.backends.local import LocalBackend
from kubetune.cli.jobs import format_size
from kubetune.client import CustomTrainer, JobStatus, Name, RunDirectory, TrainerClient
from kubetune.errors import JobExistsError

MODEL_BYTES = 300_000


def write_model(output_dir: str, size: int) -> str:
    """A custom trainer's 'training': writes ``output/merged/model.safetensors`` of ``size`` bytes."""
    from pathlib import Path

    merged = Path(output_dir) / "output" / "merged"
    merged.mkdir(parents=True, exist_ok=True)
    (merged / "model.safetensors").write_bytes(b"\0" * size)
    return str(merged)


def _trained_job(client: TrainerClient, backend: LocalBackend, name: str, run_dir: Path | None) -> Path:
    """A completed job whose run directory holds a 'model'; returns the run directory."""
    target = run_dir or backend.home / "runs" / name
    options = [Name(name)] + ([RunDirectory(str(run_dir))] if run_dir is not None else [])
    client.train(
        trainer=CustomTrainer(func=write_model, func_args={"output_dir": str(target), "size": MODEL_BYTES}),
        options=options,
    )
    client.wait_for_job_status(name, timeout=120, polling_interval=0.2)
    assert (target / "output" / "merged" / "model.safetensors").is_file()
    return target


@pytest.mark.parametrize("own_dir", [False, True], ids=["kubetune-run-dir", "output_dir"])
def test_delete_keeps_the_outputs(client: TrainerClient, backend: LocalBackend, tmp_path: Path, own_dir: bool):
    run_dir = _trained_job(client, backend, "keep", tmp_path / "mine" if own_dir else None)

    client.delete_job("keep")

    assert client.list_jobs() == []
    assert (run_dir / "output" / "merged" / "model.safetensors").stat().st_size == MODEL_BYTES
    assert not (backend.home / "logs" / "keep").exists()


@pytest.mark.parametrize("own_dir", [False, True], ids=["kubetune-run-dir", "output_dir"])
def test_purge_reports_the_size_then_removes_the_outputs(
    client: TrainerClient, backend: LocalBackend, tmp_path: Path, own_dir: bool
):
    run_dir = _trained_job(client, backend, "gone", tmp_path / "mine" if own_dir else None)
    (tmp_path / "mine").mkdir(exist_ok=True)

    outputs = client.get_job_outputs("gone")
    assert outputs.locations == [str(run_dir if not own_dir else run_dir / "output")]
    assert MODEL_BYTES <= outputs.size_bytes < MODEL_BYTES + 100_000

    client.delete_job("gone", purge=True)

    assert not (run_dir / "output").exists()
    assert client.list_jobs() == []


def test_cli_delete_says_where_the_outputs_stay_and_purge_needs_a_confirmation(
    client: TrainerClient, backend: LocalBackend
):
    run_dir = _trained_job(client, backend, "cli-keep", None)
    _trained_job(client, backend, "cli-purge", None)

    kept = kubetune(backend.home, "delete", "cli-keep")
    assert kept.returncode == 0, kept.stderr
    assert f"deleted cli-keep; its outputs are kept in {run_dir} (" in kept.stdout
    assert (run_dir / "output" / "merged" / "model.safetensors").is_file()

    size = format_size(client.get_job_outputs("cli-purge").size_bytes)
    assert size.endswith(" KiB") and 290 < float(size.split()[0]) < 310
    refused = kubetune(backend.home, "delete", "cli-purge", "--purge")  # stdin is not a terminal
    assert refused.returncode == 2
    purge_dir = backend.home / "runs" / "cli-purge"
    assert refused.stderr.strip() == (
        f"error: --purge would remove {purge_dir} ({size}); add --yes to confirm without a terminal"
    )
    assert (purge_dir / "output" / "merged").is_dir()
    assert client.get_job("cli-purge").status == JobStatus.COMPLETE

    purged = kubetune(backend.home, "delete", "cli-purge", "--purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert f"deleted cli-purge and its outputs ({size} freed: {purge_dir})" in purged.stdout
    assert not purge_dir.exists()


def test_sdk_replace_moves_the_earlier_outputs_aside_and_refuses_a_running_job(
    client: TrainerClient, backend: LocalBackend, tmp_path: Path
):
    from kubetune.spec.job import JobSpec

    run_dir = _trained_job(client, backend, "again", tmp_path / "run")
    spec = JobSpec.model_validate({"name": "again", "output_dir": str(run_dir)})

    moved = Path(client.prepare_replacement(spec))

    assert moved.parent == run_dir and moved.name.startswith("output.prev-")
    assert (moved / "merged" / "model.safetensors").stat().st_size == MODEL_BYTES
    assert not (run_dir / "output").exists()
    assert client.list_jobs() == []

    client.train(
        trainer=CustomTrainer(func=__import__("time").sleep, func_args={"secs": 60}),
        options=[Name("busy"), RunDirectory(str(tmp_path / "busy"))],
    )
    with pytest.raises(JobExistsError, match="job 'busy' is still"):
        client.prepare_replacement(JobSpec.model_validate({"name": "busy", "output_dir": str(tmp_path / "busy")}))


def _job_file(tmp_path: Path, model: Path, run: Path | None) -> Path:
    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl(GOOD_ROWS))
    job = {
        "name": "redo",
        "trainer": {
            "model": {"path": str(model)},
            "dataset": {"path": str(data), "format": "alpaca"},
            "method": "full",
            "training": {"max_steps": 1, "batch_size": 2, "max_seq_len": 96},
        },
    }
    if run is not None:
        job["output_dir"] = str(run)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.mark.parametrize("own_dir", [False, True], ids=["kubetune-run-dir", "output_dir"])
def test_cli_train_replace_keeps_the_earlier_model(tmp_path: Path, tiny_model_dir: Path, own_dir: bool):
    home = tmp_path / "home"
    run = tmp_path / "run" if own_dir else home / "runs" / "redo"
    job = _job_file(tmp_path, tiny_model_dir, run if own_dir else None)
    first = kubetune(home, "train", "-f", str(job))
    assert first.returncode == 0, first.stderr
    first_model = (run / "output" / "merged" / "model.safetensors").read_bytes()

    refused = kubetune(home, "train", "-f", str(job))
    assert refused.returncode == 2
    assert "rerun it with `kubetune train --replace` (its outputs are kept)" in " ".join(refused.stderr.split())

    second = kubetune(home, "train", "--replace", "-f", str(job))
    assert second.returncode == 0, second.stderr
    (previous,) = run.glob("output.prev-*")
    assert f"earlier outputs kept in {previous}" in second.stdout
    assert (previous / "merged" / "model.safetensors").read_bytes() == first_model
    assert (run / "output" / "merged" / "model.safetensors").is_file()
    assert "resumed" not in "\n".join(LocalBackend(home).get_job_logs("redo"))  # started afresh
    LocalBackend(home).delete_job("redo")
