"""The memory planner: sizes from config.json, the per-component estimate, checkpointing and strategy choice."""

from __future__ import annotations

import json

import pytest

from kubetune.errors import ConfigError
from kubetune.planning import GIB, ModelShape, PlanSetup, choose_checkpointing, choose_strategy, plan_memory
from kubetune.planning.memory import SAFETY_MARGIN, checkpointed_layer_count

LLAMA_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}
LLAMA_1B = {**LLAMA_8B, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16}
LLAMA_1B["tie_word_embeddings"] = True
H100 = 79.1 * GIB


def test_shape_counts_the_parameters_of_llama_8b():
    shape = ModelShape.from_config(LLAMA_8B)
    assert shape.head_dim == 128 and shape.kv_dim == 1024
    assert shape.params == pytest.approx(8.03e9, rel=0.01)
    assert ModelShape.from_config(LLAMA_1B).params == pytest.approx(1.236e9, rel=0.01)


def test_shape_reads_a_model_folder_and_names_a_missing_size(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_1B))
    assert ModelShape.from_model_dir(tmp_path).layers == 16
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA_1B, "hidden_size": None}))
    with pytest.raises(ConfigError, match=r"config\.json: no 'hidden_size'"):
        ModelShape.from_model_dir(tmp_path)
    with pytest.raises(ConfigError, match=r"not a readable config\.json"):
        ModelShape.from_model_dir(tmp_path / "missing")


def test_sliding_window_and_softcapping_are_not_plain_causal_attention():
    qwen = ModelShape.from_config({**LLAMA_1B, "sliding_window": 4096, "use_sliding_window": False})
    assert qwen.sliding_window is None and qwen.attention_is_plain_causal(32768)
    mistral_window = ModelShape.from_config({**LLAMA_1B, "sliding_window": 4096})
    assert mistral_window.attention_is_plain_causal(4096) and not mistral_window.attention_is_plain_causal(8192)
    gemma2 = ModelShape.from_config({**LLAMA_1B, "attn_logit_softcapping": 50.0})
    assert not gemma2.attention_is_plain_causal(1024)


# Measured peaks (torch.cuda.max_memory_allocated) of kubetune rows on the H100, benchmarks/README.md
# rounds 1-2 (tokens: the largest micro-batch of the run).
MEASURED = [
    (LLAMA_8B, PlanSetup("lora", "bf16", 6761, compiled=True, fused_lora=True, chunked_loss=True), 49.6),
    (LLAMA_8B, PlanSetup("lora", "bf16", 8192, compiled=True, fused_lora=True, chunked_loss=True), 53.8),
    (LLAMA_8B, PlanSetup("lora", "bf16", 8192, 0.5, compiled=True, chunked_loss=True), 38.2),
    (LLAMA_8B, PlanSetup("lora", "bf16", 6761, compiled=True, chunked_loss=True), 51.9),
    (LLAMA_1B, PlanSetup("full", "bf16", 8192, compiled=True, chunked_loss=True), 20.3),
    (LLAMA_1B, PlanSetup("full", "bf16", 16384, compiled=True, chunked_loss=True), 32.7),
    (LLAMA_8B, PlanSetup("qlora", "bf16", 1822, compiled=True, fused_lora=True, chunked_loss=True), 18.5),
    (LLAMA_8B, PlanSetup("qlora", "bf16", 2935, compiled=True, fused_lora=True, chunked_loss=True), 24.4),
    (LLAMA_8B, PlanSetup("qlora", "bf16", 2935, 0.5, fused_lora=True, chunked_loss=True), 24.5),
]


@pytest.mark.parametrize(("config", "setup", "measured_gib"), MEASURED)
def test_estimate_is_within_15_percent_of_the_measured_h100_peak(config, setup, measured_gib):
    plan = plan_memory(ModelShape.from_config(config), setup)
    assert plan.peak / GIB == pytest.approx(measured_gib, rel=0.15)


def test_components_follow_the_method():
    shape = ModelShape.from_config(LLAMA_8B)
    full = plan_memory(shape, PlanSetup("full", "bf16", 2048))
    lora = plan_memory(shape, PlanSetup("lora", "bf16", 2048))
    qlora = plan_memory(shape, PlanSetup("qlora", "bf16", 2048))
    # AdamW: two moments per trained weight, in its dtype
    assert full.components["optimizer"] == 2 * full.components["gradients"] == 2 * shape.params * 2
    assert lora.components["adapters"] < 0.05 * lora.components["weights"]
    assert qlora.components["weights"] < 0.5 * lora.components["weights"]
    assert full.peak > lora.peak > qlora.peak


def test_checkpointing_and_the_chunked_loss_shrink_the_plan():
    shape = ModelShape.from_config(LLAMA_8B)
    plain = plan_memory(shape, PlanSetup("lora", "bf16", 8192))
    half = plan_memory(shape, PlanSetup("lora", "bf16", 8192, checkpoint_share=0.5))
    chunked = plan_memory(shape, PlanSetup("lora", "bf16", 8192, chunked_loss=True))
    assert half.checkpointed_layers == 16
    assert half.components["activations"] < 0.6 * plain.components["activations"]
    assert chunked.components["logits"] < 0.5 * plain.components["logits"]


def test_fsdp_shards_weights_gradients_and_optimizer_over_the_processes():
    shape = ModelShape.from_config(LLAMA_8B)
    one = plan_memory(shape, PlanSetup("full", "bf16", 2048))
    eight = plan_memory(shape, PlanSetup("full", "bf16", 2048, world_size=8, strategy="fsdp"))
    for name in ("weights", "gradients", "optimizer"):
        assert eight.components[name] == pytest.approx(one.components[name] / 8)
    assert eight.components["distributed"] > 0
    ddp = plan_memory(shape, PlanSetup("full", "bf16", 2048, world_size=8, strategy="ddp"))
    assert ddp.peak > one.peak  # DDP's gradient buckets come on top of a whole replica


def test_auto_checkpointing_picks_the_smallest_share_that_fits():
    shape = ModelShape.from_config(LLAMA_8B)
    setup = PlanSetup("lora", "bf16", 16 * 2048, compiled=True, fused_lora=True, chunked_loss=True)
    plan = choose_checkpointing(shape, setup, H100)
    assert plan.fits and 0 < plan.checkpointed_layers < shape.layers
    assert plan.peak <= H100 * (1 - SAFETY_MARGIN)
    one_fewer = (plan.checkpointed_layers - 1) / shape.layers
    assert not plan_memory(shape, PlanSetup(**{**setup.__dict__, "checkpoint_share": one_fewer}), H100).fits
    small = choose_checkpointing(shape, PlanSetup("lora", "bf16", 2048, compiled=True, chunked_loss=True), H100)
    assert small.checkpointed_layers == 0


def test_a_plan_that_cannot_fit_says_so():
    shape = ModelShape.from_config(LLAMA_8B)
    plan = choose_checkpointing(shape, PlanSetup("full", "fp32", 4096), H100)  # 16 bytes per parameter
    assert not plan.fits and plan.checkpointed_layers == shape.layers
    assert "GiB over the" in plan.summary()


def test_strategy_is_ddp_when_a_replica_fits_and_fsdp_otherwise():
    small = ModelShape.from_config(LLAMA_1B)
    big = ModelShape.from_config(LLAMA_8B)
    assert choose_strategy(small, PlanSetup("lora", "bf16", 2048, world_size=2), H100) == "ddp"
    assert choose_strategy(big, PlanSetup("full", "bf16", 2048, world_size=8), H100) == "fsdp"
    assert choose_strategy(big, PlanSetup("full", "bf16", 2048), H100) == "ddp"  # one process: nothing to shard


@pytest.mark.parametrize(("share", "layers", "count"), [(0.0, 32, 0), (0.25, 32, 8), (1 / 3, 32, 10), (1.0, 7, 7)])
def test_checkpointed_layer_count_matches_the_trainer_rule(share, layers, count):
    assert checkpointed_layer_count(share, layers) == count
