"""Bad input to evaluation fails in one line naming the field, file or path, before a model loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.errors import ConfigError
from kubetune.spec.job import load_job_file
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.preflight import preflight_problems
from tests.client.test_sdk_cli_jobs import kubetune as cli


@pytest.fixture
def alpaca_file(tmp_path: Path) -> Path:
    path = tmp_path / "heldout.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi.", "output": "hi"}) + "\n")
    return path


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"metrics": ["accuracy"]}, "evaluation: metric(s) accuracy do not apply to format 'alpaca'"),
        ({"format": "classification"}, "evaluation: format 'classification' does not fit model.task 'causal-lm'"),
        ({"max_new_tokens": 0}, "evaluation.max_new_tokens: Input should be greater than or equal to 1"),
        ({"every_n_steps": 0}, "evaluation.every_n_steps: Input should be greater than or equal to 1"),
        ({"metrics": ["bleu"]}, "evaluation.metrics.0: Input should be"),
    ],
)
def test_the_evaluation_section_is_validated_when_the_job_is_built(section, message):
    with pytest.raises(ConfigError) as raised:
        LLMConfig(evaluation={"file": "heldout.jsonl", **section})
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_text_dataset_has_nothing_to_score_and_fsdp_is_refused():
    with pytest.raises(ConfigError, match="format 'text' has no reference answer to score"):
        LLMConfig(dataset={"format": "text"}, evaluation={"file": "x.jsonl"})
    with pytest.raises(ConfigError, match=r"evaluation runs on training\.distributed 'ddp'"):
        LLMConfig(training={"distributed": "fsdp"}, evaluation={"file": "x.jsonl"})


def test_the_job_file_anchors_a_relative_evaluation_file(tmp_path: Path):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({"trainer": {"evaluation": {"file": "data/heldout.jsonl"}}}))
    assert load_job_file(tmp_path / "job.yaml").trainer.evaluation.file == str(tmp_path / "data" / "heldout.jsonl")


def test_prelaunch_checks_name_an_evaluation_file_of_another_format(alpaca_file: Path):
    config = LLMConfig(dataset={"format": "messages"}, evaluation={"file": str(alpaca_file)})
    problems = [str(problem) for problem in preflight_problems(config, None, None)]
    assert problems == [
        f"trainer.evaluation.file: {alpaca_file}:1: no column 'messages' needed by format 'messages'; "
        "columns present: instruction, output. Use dataset.column_map to rename."
    ]
    missing = LLMConfig(evaluation={"file": str(alpaca_file.with_name("nope.jsonl"))})
    assert [str(p) for p in preflight_problems(missing, None, None)] == [
        f"trainer.evaluation.file: dataset not found: {alpaca_file.with_name('nope.jsonl')}"
    ]


def test_sdk_refuses_a_wrong_format_and_a_non_model_before_importing_torch(tmp_path: Path, alpaca_file: Path):
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "weights.bin").write_text("x")
    model = tmp_path / "model"  # looks like a model folder by its files: the checks read no weights
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    code = f"""
import sys
from kubetune.client import TrainerClient
from kubetune.errors import KubetuneError
client = TrainerClient(home={str(tmp_path / "home")!r})
for model, options in (({str(not_a_model)!r}, {{}}), ("no-such-job", {{}}), ({str(model)!r}, {{"format": "messages"}})):
    try:
        client.evaluate(model, {str(alpaca_file)!r}, **options)
    except KubetuneError as err:
        print(type(err).__name__, err)
print("heavy imports:", [m for m in ("torch", "transformers") if m in sys.modules])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ModelError {not_a_model}: not a Hugging Face model folder (no config.json)",
        "ModelError no-such-job: neither a model path nor a job of this backend",
        f"DataError {alpaca_file}:1: no column 'messages' needed by format 'messages'; columns present: "
        "instruction, output. Use dataset.column_map to rename.",
        "heavy imports: []",
    ]


def test_cli_eval_prints_one_line_for_a_file_of_no_known_format(tmp_path: Path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    odd = tmp_path / "odd.csv"
    odd.write_text("question,answer\nWho?,me\n")
    result = cli(tmp_path / "home", "eval", str(model), str(odd))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {odd}:2: cannot tell the format from the columns ['answer', 'question']; give the format "
        "(alpaca: instruction/output, completion: prompt/completion, messages, preference, classification: text/label)"
    )
