"""From ``kubetune train`` to "base 0.00 vs fine-tuned 1.00 exact match" with one more command.

A LoRA fine-tune of the real SmolLM2-135M-Instruct on a task the test makes up (every question is
answered with the made-up word "Zorblax", which the base model never says), trained under DDP
(2 processes) with an ``evaluation:`` section, then scored by ``kubetune eval --compare``.
One training run serves every test of the module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kubetune.backends.local import LocalBackend
from kubetune.cli.job_progress import describe_progress
from kubetune.client import TrainerClient
from kubetune.contracts.run_dir import RunDir
from tests.client.test_sdk_cli_jobs import kubetune as cli

ANSWER = "Zorblax"
SUBJECTS = [
    "cats",
    "rivers",
    "clocks",
    "bread",
    "mountains",
    "violins",
    "trains",
    "clouds",
    "pencils",
    "lanterns",
    "oceans",
    "bicycles",
    "gardens",
    "mirrors",
    "candles",
    "bridges",
    "planets",
    "forests",
    "kettles",
    "ladders",
    "rockets",
    "tulips",
    "wolves",
    "deserts",
]
QUESTIONS = ("Tell me about {}.", "What do you think of {}?", "Describe {} briefly.", "Why do people like {}?")
JOB = "zorblax"
MAX_NEW_TOKENS = 6


def _write_rows(path: Path, subjects: list[str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index, subject in enumerate(subjects):
            question = QUESTIONS[index % len(QUESTIONS)].format(subject)
            turns = [{"role": "user", "content": question}, {"role": "assistant", "content": ANSWER}]
            handle.write(json.dumps({"messages": turns}) + "\n")
    return path


@dataclass(frozen=True)
class Trained:
    home: Path
    root: Path
    run: RunDir
    heldout: Path
    base: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smollm2_dir: Path) -> Trained:
    root = tmp_path_factory.mktemp("zorblax")
    home = root / "home"
    _write_rows(root / "train.jsonl", SUBJECTS[:16])
    heldout = _write_rows(root / "heldout.jsonl", SUBJECTS[16:])  # subjects the fine-tune never saw
    job = {
        "name": JOB,
        "procs_per_node": 2,
        "trainer": {
            "model": {"path": str(smollm2_dir)},
            "dataset": {"path": "train.jsonl", "format": "messages"},
            "lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 6, "batch_size": 4, "max_seq_len": 64, "learning_rate": 3e-3},
            # relative to the job file, like the dataset
            "evaluation": {"file": "heldout.jsonl", "max_new_tokens": MAX_NEW_TOKENS, "every_n_steps": 3},
        },
    }
    (root / "job.yaml").write_text(yaml.safe_dump(job))
    result = cli(home, "train", "-f", str(root / "job.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    return Trained(home, root, RunDir(home / "runs" / JOB), heldout, smollm2_dir)


def _final_scores(trained: Trained) -> dict[str, float]:
    return json.loads(trained.run.evaluation_report.read_text())["metrics"]


def test_the_jobs_evaluation_section_scores_under_ddp_into_metrics_progress_and_describe(trained: Trained):
    records = [json.loads(line) for line in trained.run.metrics_file.read_text().splitlines()]
    scored = [record for record in records if record.get("evaluation")]
    assert [record["step"] for record in scored] == [3, 6]  # every_n_steps, and the end of training
    assert all(record["loss"] is None for record in scored)  # their own records beside the training steps
    final = scored[-1]["evaluation"]
    assert set(final) == {"exact_match", "first_word", "contains", "rouge_l"}
    assert final["exact_match"] >= 0.75, final

    report = json.loads(trained.run.evaluation_report.read_text())
    assert report["rows"] == 8 and report["step"] == 6 and report["metrics"] == final
    assert [sample["reference"] for sample in report["samples"]] == [ANSWER] * 8

    job = TrainerClient(LocalBackend(trained.home)).get_job(JOB)
    assert job.progress.step == 6 and job.progress.loss is not None and job.progress.evaluation == final
    assert f"exact_match {final['exact_match']:.2f}" in describe_progress(job)
    described = cli(trained.home, "describe", JOB)
    assert f"Evaluation: exact_match {final['exact_match']:.2f} | first_word" in described.stdout, described.stdout


def test_eval_compare_shows_the_base_near_zero_and_the_fine_tune_high(trained: Trained):
    out = trained.root / "compare.json"
    result = cli(
        trained.home,
        "eval",
        JOB,
        str(trained.heldout),
        "--compare",
        str(trained.base),
        "--max-new-tokens",
        str(MAX_NEW_TOKENS),
        "--json-out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    base, tuned = data["base"]["metrics"], data["tuned"]["metrics"]
    print(f"exact match: base {base['exact_match']:.2f} vs fine-tuned {tuned['exact_match']:.2f}")
    assert base["exact_match"] == 0.0 and tuned["exact_match"] >= 0.75
    assert data["delta"]["exact_match"] == pytest.approx(tuned["exact_match"] - base["exact_match"], abs=1e-4)
    # One process scoring the merged export agrees with the job's two ranks scoring the trained model.
    assert tuned["exact_match"] == _final_scores(trained)["exact_match"]
    assert data["tuned"]["model"] == JOB and data["base"]["model"] == str(trained.base)
    row = next(line for line in result.stdout.splitlines() if "exact_match" in line)
    assert f"{base['exact_match']:.2f}" in row and f"{tuned['exact_match']:.2f}" in row and "+" in row


def test_the_sdk_scores_the_adapter_on_its_base(trained: Trained):
    client = TrainerClient(LocalBackend(trained.home))
    seen: list[tuple[int, int]] = []
    report = client.evaluate(
        trained.base,
        trained.heldout,
        adapter=trained.run.adapter,
        max_new_tokens=MAX_NEW_TOKENS,
        max_samples=4,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert report.rows == 4 and seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert [sample.prediction for sample in report.samples] == [ANSWER] * 4
