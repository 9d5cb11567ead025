"""The ``evaluation:`` section in a one-process run: scored every N steps and at the end, recorded in
metrics.jsonl and output/evaluation.json, and the same answers as ``TrainerClient.evaluate`` of the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.client import TrainerClient
from kubetune.contracts.run_dir import RunDir
from kubetune.local_run import fine_tune
from kubetune.spec.job import JobSpec


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, smollm2_dir: Path) -> Path:
    from tests.faults.jobs import tiny_model

    return tiny_model(smollm2_dir, tmp_path_factory.mktemp("tiny") / "model")


def _completions(path: Path, count: int, offset: int = 0) -> Path:
    with path.open("w") as handle:
        for i in range(offset, offset + count):
            handle.write(json.dumps({"prompt": f"Count from {i}:", "completion": f" {i + 1} {i + 2}"}) + "\n")
    return path


def test_one_process_scores_every_n_steps_and_at_the_end(tmp_path: Path, tiny_model: Path):
    train = _completions(tmp_path / "train.jsonl", 8)
    heldout = _completions(tmp_path / "heldout.jsonl", 5, offset=50)
    spec = JobSpec.model_validate(
        {
            "name": "counting",
            "trainer": {
                "model": {"path": str(tiny_model)},
                "dataset": {"path": str(train), "format": "completion"},
                "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
                "training": {"max_steps": 5, "batch_size": 4, "max_seq_len": 32},
                "evaluation": {"file": str(heldout), "max_new_tokens": 4, "every_n_steps": 2, "batch_size": 2},
            },
        }
    )
    run = RunDir(tmp_path / "run")
    fine_tune(spec, run.root)

    records = [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    scored = [(record["step"], record["evaluation"]) for record in records if record.get("evaluation")]
    assert [step for step, _ in scored] == [2, 4, 5]
    report = json.loads(run.evaluation_report.read_text())
    assert report["step"] == 5 and report["rows"] == 5 and report["metrics"] == scored[-1][1]
    assert set(report["metrics"]) == {"exact_match", "first_word", "contains", "rouge_l"}
    assert [sample["reference"] for sample in report["samples"]] == [f" {i + 1} {i + 2}" for i in range(50, 55)]

    # The run directory as a model: its merged export, its job's dataset settings (format completion).
    again = TrainerClient(home=tmp_path / "home").evaluate(run.root, heldout, max_new_tokens=4)
    assert [sample.prediction for sample in again.samples] == [sample["prediction"] for sample in report["samples"]]
    assert again.metrics == report["metrics"]
