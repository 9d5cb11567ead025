"""User errors stop before training with one clear line naming the field or file."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.foundation.test_cli_train import ROWS, job_yaml, kubetune_cli, write_dataset


def assert_user_error(result, *needles: str) -> None:
    assert result.returncode != 0
    message = result.stderr.strip()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(message.splitlines()) == 1, message
    assert message.startswith("error:"), message
    for needle in needles:
        assert needle in message, message


def test_unknown_field_is_named(tmp_path, smollm2_dir):
    job = job_yaml(tmp_path, str(smollm2_dir), training={"max_steps": 1, "learnin_rate": 0.1})
    assert_user_error(kubetune_cli("train", "-f", str(job)), "trainer.training.learnin_rate", "unknown field")
    assert not (tmp_path / "run").exists()


def test_missing_model_is_named(tmp_path):
    job = job_yaml(tmp_path, str(tmp_path / "no-such-model"))
    assert_user_error(kubetune_cli("train", "-f", str(job)), "model not found", "no-such-model")
    assert not (tmp_path / "run" / "output" / "metrics.jsonl").exists()


def test_missing_dataset_file_is_named(tmp_path, smollm2_dir):
    job = job_yaml(tmp_path, str(smollm2_dir), dataset={"path": str(tmp_path / "missing.jsonl"), "format": "alpaca"})
    assert_user_error(kubetune_cli("train", "-f", str(job)), "dataset not found", "missing.jsonl")
    assert not (tmp_path / "run" / "output" / "metrics.jsonl").exists()


def test_dataset_without_needed_columns_names_column_and_file(tmp_path, smollm2_dir):
    data = write_dataset(tmp_path / "qa.jsonl", [{"question": r["instruction"], "answer": r["output"]} for r in ROWS])
    job = job_yaml(tmp_path, str(smollm2_dir), dataset={"path": str(data), "format": "alpaca"})
    result = kubetune_cli("train", "-f", str(job))
    assert_user_error(result, "qa.jsonl", "'instruction'", "'output'", "column_map")
    assert not (tmp_path / "run" / "output" / "metrics.jsonl").exists()


def test_column_map_fixes_the_columns(tmp_path, smollm2_dir):
    data = write_dataset(tmp_path / "qa.jsonl", [{"question": r["instruction"], "answer": r["output"]} for r in ROWS])
    dataset = {"path": str(data), "format": "alpaca", "column_map": {"instruction": "question", "output": "answer"}}
    job = job_yaml(tmp_path, str(smollm2_dir), dataset=dataset, training={"max_steps": 1, "max_seq_len": 64})
    result = kubetune_cli("train", "-f", str(job))
    assert result.returncode == 0, result.stderr[-2000:]


def test_malformed_jsonl_line_names_file_and_line(tmp_path, smollm2_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{not json\n", encoding="utf-8")
    job = job_yaml(tmp_path, str(smollm2_dir), dataset={"path": str(bad), "format": "alpaca"})
    assert_user_error(kubetune_cli("train", "-f", str(job)), "bad.jsonl:2", "malformed JSON")


@pytest.mark.parametrize(
    ("training", "field"),
    [
        ({"learning_rate": 0}, "trainer.training.learning_rate"),
        ({"batch_size": 0}, "trainer.training.batch_size"),
    ],
)
def test_out_of_range_numbers_are_named(tmp_path, training, field):
    job = job_yaml(tmp_path, "/unused", training=training)
    assert_user_error(kubetune_cli("validate", "-f", str(job)), field)


def test_duplicate_yaml_key_is_rejected(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nname: b\n", encoding="utf-8")
    assert_user_error(kubetune_cli("validate", "-f", str(path)), "duplicate key 'name'", "dup.yaml")


def test_missing_job_file_is_named(tmp_path):
    assert_user_error(kubetune_cli("validate", "-f", str(tmp_path / "nope.yaml")), "nope.yaml")


def test_lora_rank_zero_is_rejected(tmp_path):
    job = yaml.safe_load(job_yaml(tmp_path, "/unused").read_text())
    job["trainer"]["lora"]["r"] = 0
    (tmp_path / "r0.yaml").write_text(yaml.safe_dump(job))
    assert_user_error(kubetune_cli("validate", "-f", str(tmp_path / "r0.yaml")), "trainer.lora.r")
