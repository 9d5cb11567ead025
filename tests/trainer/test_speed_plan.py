"""``auto`` speed settings: resolved once from model, method, data format and device (CUDA injected)."""

from __future__ import annotations

import json

import pytest

from kubetune.errors import ConfigError
from kubetune.planning import GIB, ModelShape
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.speed_plan import DeviceInfo, largest_micro_batch, model_shape, resolve_speed

CPU = DeviceInfo("cpu")
H100 = DeviceInfo("cuda", bf16=True, memory_bytes=79.1 * GIB, name="NVIDIA H100 80GB HBM3")
V100 = DeviceInfo("cuda", bf16=False, memory_bytes=31.7 * GIB, name="Tesla V100")
LLAMA_8B = ModelShape.from_config(
    {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    }
)
SMALL = ModelShape("llama", 30, 576, 1536, 9, 3, 64, 49152, True)
LEVERS = ("packing", "chunked_loss", "fused_lora", "compile", "gradient_checkpointing")


def config(method="lora", fmt="alpaca", **training) -> LLMConfig:
    task = {"task": "sequence-classification"} if fmt == "classification" else {}
    return LLMConfig(method=method, dataset={"format": fmt}, model=task, training=training)


def levers(plan) -> dict:
    return {name: getattr(plan.training, name) for name in LEVERS}


@pytest.mark.parametrize(
    ("method", "fmt"),
    [
        (method, fmt)
        for method in ("full", "lora", "qlora", "dora", "prefix", "prompt")
        for fmt in ("alpaca", "messages", "text", "classification")
        if not (fmt == "classification" and method in ("prefix", "prompt"))
    ],
)
def test_cpu_resolves_to_the_exact_fp32_path(method, fmt):
    plan = resolve_speed(config(method, fmt), CPU, shape=SMALL)
    assert plan.training.precision == "fp32"
    assert not any(levers(plan).values())
    assert plan.plan is None and plan.training.distributed == "ddp"


@pytest.mark.parametrize("fmt", ["alpaca", "messages", "completion", "text"])
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_cuda_lora_on_token_formats_gets_every_lever(method, fmt):
    plan = resolve_speed(config(method, fmt), H100, shape=SMALL)
    assert plan.training.precision == "bf16"
    assert levers(plan) == {
        "packing": True,
        "chunked_loss": True,
        "fused_lora": True,
        "compile": True,
        "gradient_checkpointing": False,
    }
    assert plan.plan is not None and plan.plan.fits


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("full", {"packing": True, "chunked_loss": True, "fused_lora": False, "compile": True}),
        ("dora", {"packing": True, "chunked_loss": True, "fused_lora": False, "compile": True}),
        ("prefix", {"packing": False, "chunked_loss": False, "fused_lora": False, "compile": False}),
        ("prompt", {"packing": False, "chunked_loss": False, "fused_lora": False, "compile": False}),
    ],
)
def test_cuda_levers_follow_the_method(method, expected):
    plan = resolve_speed(config(method), H100, shape=SMALL)
    assert {name: getattr(plan.training, name) for name in expected} == expected


def test_cuda_classification_neither_packs_nor_chunks_the_loss():
    plan = resolve_speed(config("lora", "classification"), H100, shape=SMALL)
    assert not plan.training.packing and not plan.training.chunked_loss
    assert plan.training.fused_lora and plan.training.compile


def test_lora_dropout_turns_fused_lora_off():
    cfg = LLMConfig(method="lora", lora={"dropout": 0.05})
    assert not resolve_speed(cfg, H100, shape=SMALL).training.fused_lora


def test_lora_target_modules_shape_the_plan_and_default_to_every_linear():
    named = resolve_speed(LLMConfig(method="lora", lora={"target_modules": ["q_proj", "v_proj"]}), H100, shape=SMALL)
    unset = resolve_speed(LLMConfig(method="lora", lora={"target_modules": None}), H100, shape=SMALL)
    assert named.plan.setup.lora_targets == ("q_proj", "v_proj") and unset.plan.setup.lora_targets == "all-linear"
    assert named.plan.components["adapters"] < unset.plan.components["adapters"]


def test_a_gpu_without_bf16_trains_in_fp32():
    assert resolve_speed(config(), V100, shape=SMALL).training.precision == "fp32"


def test_explicit_values_win():
    plan = resolve_speed(config(precision="fp32", packing=False, compile=False, gradient_checkpointing=True), H100)
    assert plan.training.precision == "fp32" and not plan.training.packing and not plan.training.compile
    assert plan.training.gradient_checkpointing and plan.training.gradient_checkpointing_fraction == 1.0
    assert plan.training.chunked_loss  # still auto


def test_checkpointing_auto_picks_a_share_from_the_memory_plan():
    batches = [[2048] * 16] * 4
    plan = resolve_speed(config("lora", batch_size=16, max_seq_len=2048), H100, shape=LLAMA_8B, batches=batches)
    share = plan.training.gradient_checkpointing_fraction
    assert plan.training.gradient_checkpointing and 0 < share < 1
    assert plan.plan.fits and plan.plan.setup.tokens == 16 * 2048
    short_batches = [[300] * 16] * 4
    short = resolve_speed(config("lora", batch_size=16, max_seq_len=2048), H100, shape=LLAMA_8B, batches=short_batches)
    assert not short.training.gradient_checkpointing  # the data's own lengths, not max_seq_len, size the plan


def test_several_processes_keep_unproven_levers_off_and_say_so():
    plan = resolve_speed(config("lora"), H100, world_size=2, shape=SMALL)
    assert plan.training.precision == "bf16"
    # Packing, the chunked loss and fused LoRA passed the DDP/FSDP matrix (test_distributed_levers.py).
    assert plan.training.packing and plan.training.chunked_loss and plan.training.fused_lora
    assert not plan.training.compile
    assert plan.held_back == ("compile",)
    assert "kept off: not yet proven with 2 processes under ddp" in plan.describe()


def test_distributed_auto_shards_a_model_whose_replica_does_not_fit():
    assert resolve_speed(config("full"), H100, world_size=8, shape=LLAMA_8B).training.distributed == "fsdp"
    assert resolve_speed(config("lora"), H100, world_size=2, shape=SMALL).training.distributed == "ddp"
    assert resolve_speed(config("full"), CPU, world_size=2, shape=LLAMA_8B).training.distributed == "ddp"


def test_explicit_packing_on_a_soft_capped_model_is_refused():
    gemma2 = ModelShape("gemma2", 26, 2304, 9216, 8, 4, 256, 256000, True, sliding_window=4096, softcapping=True)
    assert not resolve_speed(config("lora"), H100, shape=gemma2).training.packing
    with pytest.raises(ConfigError, match=r"^training\.packing: gemma2 soft-caps attention logits"):
        resolve_speed(config("lora", packing=True), H100, shape=gemma2)


def test_a_sliding_window_shorter_than_max_seq_len_turns_auto_packing_off():
    windowed = ModelShape("mistral", 4, 256, 512, 4, 4, 64, 1000, False, sliding_window=512)
    assert resolve_speed(config("lora", max_seq_len=512), H100, shape=windowed).training.packing
    assert not resolve_speed(config("lora", max_seq_len=1024), H100, shape=windowed).training.packing


def test_another_attention_implementation_turns_auto_packing_off_and_explicit_packing_fails():
    cfg = LLMConfig(method="lora", model={"attn_implementation": "eager"})
    assert not resolve_speed(cfg, H100, shape=SMALL).training.packing
    forced = LLMConfig(method="lora", model={"attn_implementation": "eager"}, training={"packing": True})
    with pytest.raises(ConfigError, match=r"^training\.packing: model\.attn_implementation 'eager'"):
        resolve_speed(forced, H100, shape=SMALL)


def test_a_plan_that_cannot_fit_is_refused_saying_by_how_much_and_what_to_change():
    with pytest.raises(ConfigError) as err:
        resolve_speed(config("full", precision="fp32", max_seq_len=4096), H100, shape=LLAMA_8B)
    message = str(err.value)
    assert message.startswith("memory plan: full needs ") and "GiB more than the 79 GiB of NVIDIA H100" in message
    assert "more GPUs" in message and "\n" not in message


def test_the_log_line_names_every_setting_and_the_plan():
    line = resolve_speed(config("lora"), H100, shape=SMALL).describe()
    assert line.startswith("precision bf16, packing on, chunked loss on, fused LoRA on, compile per layer, ")
    assert "checkpointing off: plan fits " in line and line.endswith(" of 79 GiB")
    assert resolve_speed(config("lora"), CPU).describe() == (
        "precision fp32, packing off, chunked loss off, fused LoRA off, compile off, checkpointing off"
    )


def test_largest_micro_batch_counts_packed_tokens_or_padded_rows():
    batches = [[5, 100], [7, 60], [3, 90, 90]]
    assert largest_micro_batch(batches, packed=True) == 183
    assert largest_micro_batch(batches, packed=False) == 270


def test_model_shape_reads_the_model_folder_and_tolerates_unknown_architectures(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    assert model_shape(tmp_path, LLMConfig().model) is None


def test_the_trainer_refuses_a_plan_that_cannot_fit_before_loading_the_model(
    tmp_path, smollm2_dir, swap_data, monkeypatch
):
    from synthetic_jobs import make_spec

    from kubetune.trainer import build as trainer_build
    from kubetune.trainer import run as trainer_run

    tiny_gpu = DeviceInfo("cuda", bf16=True, memory_bytes=0.1 * GIB, name="a 0.1 GiB GPU")
    monkeypatch.setattr(trainer_run, "device_info", lambda device: tiny_gpu)

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(trainer_build, "load_model", no_load)
    spec = make_spec(smollm2_dir, swap_data, tmp_path / "run", method="full")
    with pytest.raises(ConfigError, match=r"^memory plan: full needs .* GiB more than the 0 GiB of a 0\.1 GiB GPU"):
        trainer_run.run_training(spec, tmp_path / "run")
    assert not (tmp_path / "run" / "output").exists()
