"""Bad configs are rejected before any step, each with one clear line naming the problem."""

from __future__ import annotations

import json
import shutil

import pytest
from synthetic_jobs import make_spec, write_jsonl

from kubetune.errors import ConfigError, DataError
from kubetune.trainer.run import run_training


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"training": {"learning_rate": 0}}, "training.learning_rate"),
        ({"training": {"learning_rate": -1e-4}}, "training.learning_rate"),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"training": {"batch_size": 0}}, "training.batch_size"),
        ({"method": "peft"}, "method 'peft' needs a 'peft' section"),
        ({"method": "qlora", "training": {"distributed": "fsdp"}}, "cannot shard QLoRA's 4-bit base"),
        ({"method": "prompt", "training": {"distributed": "fsdp"}}, "training.distributed 'fsdp'"),
        ({"dataset": {"format": "classification"}}, "sequence-classification"),
        ({"peft": {"type": "ia3"}}, "'peft' is not a setting of method 'lora'"),
        ({"method": "prefix", "lora": {"r": 4}}, "'lora' is not a setting of method 'prefix'"),
        ({"method": "full", "prompt_learning": {"num_virtual_tokens": 4}}, "'prompt_learning' is not a setting"),
        ({"method": "peft", "peft": {"type": "lora"}}, "use method: lora instead of peft: {type: lora}"),
        ({"training": {"checkpoint_every": "30 min"}}, "training.checkpoint_every: Value error, '30 min' is neither"),
        ({"training": {"checkpoint_every": "0s"}}, "training.checkpoint_every: Value error, '0s': a checkpoint"),
        ({"training": {"checkpoint_every": 0}}, "training.checkpoint_every: Value error, a number of steps"),
        ({"training": {"checkpoint_every": True}}, "training.checkpoint_every: Value error, expected a number"),
        ({"training": {"checkpoint_every": 1.5}}, "training.checkpoint_every: Value error, expected a number"),
    ],
)
def test_invalid_field_is_rejected_when_the_spec_is_built(tmp_path, override, field):
    with pytest.raises(ConfigError) as caught:
        make_spec(tmp_path / "model", tmp_path / "data.jsonl", tmp_path / "run", **override)
    message = str(caught.value)
    assert field in message
    assert "\n" not in message


def test_qlora_on_cpu_fails_before_anything_is_loaded(tmp_path):
    # The model and data do not even exist: the hardware check must come first.
    spec = make_spec(tmp_path / "no-model", tmp_path / "no-data.jsonl", tmp_path / "run", method="qlora")
    with pytest.raises(ConfigError, match=r"qlora.*needs a CUDA GPU"):
        run_training(spec, tmp_path / "run")
    assert not (tmp_path / "run" / "output" / "metrics.jsonl").exists()


def test_unknown_peft_type_names_the_field(tmp_path, smollm2_dir, swap_data):
    spec = make_spec(smollm2_dir, swap_data, tmp_path / "run", method="peft", peft={"type": "not-a-method"})
    with pytest.raises(ConfigError, match=r"peft.type: unknown PEFT method 'not-a-method'"):
        run_training(spec, tmp_path / "run")
    assert not (tmp_path / "run" / "output" / "metrics.jsonl").exists()


def test_messages_format_needs_a_chat_template(tmp_path, smollm2_dir):
    model = tmp_path / "model"
    shutil.copytree(smollm2_dir, model, ignore=shutil.ignore_patterns("*.safetensors", "chat_template.jinja"))
    config_path = model / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config.pop("chat_template", None)
    config_path.write_text(json.dumps(tokenizer_config))
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    spec = make_spec(model, data, tmp_path / "run", dataset={"format": "messages"})
    with pytest.raises(DataError, match="no chat template") as caught:
        run_training(spec, tmp_path / "run")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "output" / "metrics.jsonl").exists()


def test_cli_entry_point_prints_one_line_and_exits_2(tmp_path):
    import subprocess
    import sys

    import yaml

    spec = make_spec(tmp_path / "m", tmp_path / "d.jsonl", tmp_path / "run", method="qlora")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    done = subprocess.run(
        [sys.executable, "-m", "kubetune.trainer", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("error: method 'qlora' needs a CUDA GPU")
