"""Every fine-tuning method trains on the real model (its loss falls) and exports what users load."""

from __future__ import annotations

import json
from typing import get_args

import pytest
import torch
from synthetic_jobs import make_spec, swap_pairs, swap_rows, write_jsonl

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError
from kubetune.spec.job import load_job_file, write_job_file
from kubetune.spec.trainer import METHOD_CONFIGS, LLMConfig, Method
from kubetune.trainer.methods import METHODS as METHOD_TABLE
from kubetune.trainer.methods import build_peft_config, is_mergeable
from kubetune.trainer.run import run_training

METRIC_KEYS = {
    "step",
    "total_steps",
    "loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "real_tokens",
    "padded_tokens",
    "elapsed_s",
    "eta_s",
    "eval_loss",
}

METHODS = {
    "lora": {"training": {"learning_rate": 3e-3}},
    "dora": {"training": {"learning_rate": 3e-3}},
    "full": {"training": {"learning_rate": 1e-4, "batch_size": 2}},
    "prefix": {"training": {"learning_rate": 1e-2}, "prompt_learning": {"num_virtual_tokens": 8}},
    "prompt": {"training": {"learning_rate": 3e-2}, "prompt_learning": {"num_virtual_tokens": 8}},
    "peft": {
        "training": {"learning_rate": 3e-2},
        "peft": {
            "type": "ia3",
            "target_modules": ["k_proj", "v_proj", "down_proj"],
            "feedforward_modules": ["down_proj"],
        },
    },
}


@pytest.fixture(scope="module")
def four_rows(tmp_path_factory):
    """Four rows: with batch_size 4 every step sees the same batch, so a working method lowers the loss."""
    return write_jsonl(tmp_path_factory.mktemp("four") / "data.jsonl", swap_rows(swap_pairs(1, 4)))


@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_and_loss_falls(tmp_path, smollm2_dir, four_rows, method):
    override = METHODS[method]
    rows = override["training"].get("batch_size", 4)
    data = four_rows if rows == 4 else write_jsonl(tmp_path / "d.jsonl", swap_rows(swap_pairs(1, rows)))
    spec = make_spec(smollm2_dir, data, tmp_path / "run", method=method, **override)
    spec.trainer.training.max_steps = 4
    result = run_training(spec, tmp_path / "run")
    assert len(result.losses) == 4
    assert result.losses[-1] < 0.8 * result.losses[0], result.losses
    if method == "full":
        assert result.adapter_dir is None and (result.merged_dir / "model.safetensors").is_file()
    elif method in ("prefix", "prompt"):
        # Virtual tokens cannot be folded into the base weights: adapter only.
        assert result.merged_dir is None
        assert (result.adapter_dir / "adapter_config.json").is_file()
    else:
        assert (result.adapter_dir / "adapter_config.json").is_file()
        assert (result.merged_dir / "model.safetensors").is_file()


def test_metrics_eval_loss_plot_and_exports_load_with_plain_libraries(tmp_path, smollm2_dir, swap_data):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = make_spec(
        smollm2_dir,
        swap_data,
        tmp_path / "run",
        dataset={"eval_fraction": 0.25},
        training={"max_steps": 4, "eval_every": 2, "learning_rate": 3e-3},
    )
    result = run_training(spec, tmp_path / "run")
    records = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(set(r) >= METRIC_KEYS for r in records)
    assert [r["eval_loss"] is not None for r in records] == [False, True, False, True]
    assert records[-1]["eval_loss"] < records[1]["eval_loss"]
    assert all(r["padded_tokens"] >= r["real_tokens"] > 0 and r["total_steps"] == 4 for r in records)
    assert (result.output_dir / "loss.png").read_bytes().startswith(b"\x89PNG")

    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    adapted = AutoPeftModelForCausalLM.from_pretrained(result.adapter_dir)
    ids = tokenizer("swap: apple river =>", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**ids).logits, adapted(**ids).logits, rtol=1e-4, atol=1e-4)
    assert (result.merged_dir / "generation_config.json").is_file()


def test_gradient_checkpointing_gives_the_same_losses_and_bf16_stays_close(tmp_path, smollm2_dir, four_rows):
    losses = {}
    for name, training in (
        ("fp32", {}),
        ("checkpointed", {"gradient_checkpointing": True}),
        ("bf16", {"precision": "bf16"}),
    ):
        spec = make_spec(
            smollm2_dir,
            four_rows,
            tmp_path / name,
            training={"max_steps": 3, "learning_rate": 3e-3, **training},
            output={"save_adapter": False, "save_merged": False},
        )
        losses[name] = run_training(spec, tmp_path / name).losses
    assert losses["checkpointed"] == pytest.approx(losses["fp32"], rel=1e-4)
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)
    assert losses["bf16"][-1] < losses["bf16"][0]


def test_every_method_of_the_spec_has_one_row_in_the_trainer_table():
    assert set(METHOD_TABLE) == set(get_args(Method)) == set(METHOD_CONFIGS)
    for name, row in METHOD_TABLE.items():
        assert (row.peft_config is None) == (name == "full")


@pytest.mark.parametrize(
    ("method", "section", "mergeable"),
    [
        ("full", {}, True),
        ("lora", {}, True),
        ("qlora", {}, True),
        ("dora", {}, True),
        ("prefix", {}, False),
        ("prompt", {}, False),
        ("peft", {"peft": {"type": "ia3"}}, True),
        ("peft", {"peft": {"type": "prefix_tuning"}}, None),  # refused: it has a method of its own
        ("peft", {"peft": {"type": "adaption_prompt"}}, False),
    ],
)
def test_the_table_says_which_adapters_merge(method, section, mergeable):
    if mergeable is None:
        with pytest.raises(ConfigError, match="use method: prefix"):
            LLMConfig(method=method, **section)
        return
    config = LLMConfig(method=method, **section)
    assert is_mergeable(config) is mergeable
    assert config.method_config.method == method


def test_peft_builds_the_chosen_methods_config_from_its_typed_section():
    import peft

    config = LLMConfig(method="dora", lora={"r": 4, "target_modules": ["q_proj"]})
    built = build_peft_config(config, None)
    assert isinstance(built, peft.LoraConfig) and built.use_dora and built.r == 4
    prompt = build_peft_config(LLMConfig(method="prompt", prompt_learning={"num_virtual_tokens": 3}), None)
    assert isinstance(prompt, peft.PromptTuningConfig) and prompt.num_virtual_tokens == 3


def test_config_yaml_is_written_once_by_whoever_launches_the_trainer(tmp_path, smollm2_dir, four_rows):
    spec = make_spec(
        smollm2_dir,
        four_rows,
        tmp_path / "run",
        training={"max_steps": 1},
        output={"save_adapter": False, "save_merged": False},
    )
    layout = RunDir(tmp_path / "run")
    launched = write_job_file(spec, layout.config_file)  # what the local supervisor does before launch
    written = launched.stat().st_ino
    run_training(spec, layout.root, config_file=launched)
    assert layout.config_file.stat().st_ino == written  # the trainer did not write it again

    other = RunDir(tmp_path / "other")
    run_training(spec, other.root)  # launched without that file (fine_tune, Kubernetes): the trainer records it
    assert load_job_file(other.config_file).trainer == spec.trainer
