"""QLoRA: 4-bit NF4 base weights via bitsandbytes, on a CUDA GPU (run on the device machine)."""

from __future__ import annotations

import pytest
import torch
from synthetic_jobs import make_spec, swap_pairs, swap_rows, write_jsonl

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_trains_a_4bit_base_and_exports_a_full_precision_merge(tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    import kubetune.trainer.run as run_module

    # A small Llama with a word-level tokenizer, built here: the GPU machine has no model files.
    words = sorted({w for a, b in swap_pairs(0, 40) for w in (a, b)} | {"swap:", "=>"})
    vocab = {"<unk>": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        eos_token_id=1,
    )
    model_dir = tmp_path / "tiny-llama"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = write_jsonl(tmp_path / "data.jsonl", swap_rows(swap_pairs(0, 8)))

    seen = {}
    prepare = run_module.prepare_for_training

    def record_quantization(model, llm_config):
        seen["4bit"] = any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        return prepare(model, llm_config)

    monkeypatch.setattr(run_module, "prepare_for_training", record_quantization)
    spec = make_spec(
        model_dir,
        data,
        tmp_path / "run",
        method="qlora",
        training={"max_steps": 6, "batch_size": 8, "learning_rate": 5e-3, "precision": "bf16"},
    )
    result = run_module.run_training(spec, tmp_path / "run")
    assert seen["4bit"], "the base was not loaded as 4-bit NF4"
    assert result.losses[-1] < result.losses[0]
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
    assert (result.adapter_dir / "adapter_config.json").is_file()
