"""The trainer's code paths work on the common causal-LM architectures, not only Llama.

Each architecture is a tiny randomly initialised model of that type, saved as a normal Hugging
Face folder with SmolLM2's tokenizer: weights do not matter for these checks (LoRA on
"all-linear", packing, export), the architecture's module layout and attention code do.
Learning itself is tested on the real SmolLM2 (test_learning.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from synthetic_jobs import make_spec, swap_pairs, swap_rows, write_jsonl
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from kubetune.trainer.run import run_training

SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
}

ARCHITECTURES = ["llama", "qwen2", "qwen3", "mistral", "gemma", "gemma3_text", "phi3"]


def tiny_model(model_type: str, tokenizer, folder: Path) -> Path:
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPE,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_lora_all_linear_with_packing_trains_and_exports(model_type, tmp_path, smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model_dir = tiny_model(model_type, tokenizer, tmp_path / model_type)
    data = write_jsonl(tmp_path / "swap.jsonl", swap_rows(swap_pairs(1, 8)))
    spec = make_spec(
        model_dir,
        data,
        tmp_path / "run",
        lora={"r": 4, "alpha": 8, "target_modules": "all-linear"},
        training={"max_steps": 2, "batch_size": 4, "max_seq_len": 32, "packing": True, "learning_rate": 1e-3},
    )
    result = run_training(spec, tmp_path / "run")
    assert len(result.losses) == 2 and all(math.isfinite(loss) for loss in result.losses)
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    assert merged.config.model_type == model_type
    with torch.no_grad():
        logits = merged(**tokenizer("swap: a b =>", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_packed_loss_equals_padded_loss(model_type, tmp_path, smollm2_dir):
    """Packing keeps samples apart on every architecture (sliding windows and soft-capping included)."""
    from kubetune.trainer.data.batching import collate
    from kubetune.trainer.data.formats import IGNORE_INDEX, Example
    from kubetune.trainer.data.packing import collate_packed
    from kubetune.trainer.kernels.packed_attention import use_packed_attention
    from kubetune.trainer.loop import loss_sum

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model(model_type, tokenizer, tmp_path / model_type)).eval()
    use_packed_attention(model)
    generator = torch.Generator().manual_seed(3)
    examples = []
    for length in (19, 7, 13):
        ids = torch.randint(10, len(tokenizer), (length,), generator=generator).tolist()
        examples.append(Example(ids, [IGNORE_INDEX if i < 3 else t for i, t in enumerate(ids)]))
    with torch.no_grad():
        padded, padded_n = loss_sum(model, collate(examples, tokenizer.pad_token_id))
        packed, packed_n = loss_sum(model, collate_packed(examples))
    assert packed_n == padded_n
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-4)
