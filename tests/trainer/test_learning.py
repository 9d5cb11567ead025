"""A short LoRA fine-tune teaches the real model a new task: held-out exact match goes from ~0 to >= 80%."""

from __future__ import annotations

import torch
from synthetic_jobs import make_spec, swap_pairs, swap_prompt, swap_rows, write_jsonl

from kubetune.trainer.run import run_training


def exact_match(model_dir, pairs: list[tuple[str, str]]) -> float:
    """Greedy answers of the model at ``model_dir`` (plain transformers) compared with ``b a``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    batch = tokenizer([swap_prompt(a, b) for a, b in pairs], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answers = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    hits = [answer.strip() == f"{b} {a}" for answer, (a, b) in zip(answers, pairs, strict=True)]
    return sum(hits) / len(hits)


def test_lora_fine_tune_learns_to_swap_words_on_held_out_pairs(tmp_path, smollm2_dir):
    train_pairs = swap_pairs(10, 64)
    held_out = swap_pairs(11, 20, exclude=set(train_pairs))
    data = write_jsonl(tmp_path / "train.jsonl", swap_rows(train_pairs))
    spec = make_spec(
        smollm2_dir,
        data,
        tmp_path / "run",
        lora={"r": 16, "alpha": 32, "target_modules": "all-linear"},
        training={"max_steps": 24, "batch_size": 8, "learning_rate": 2e-3, "lr_scheduler": "cosine", "warmup_steps": 2},
        output={"save_adapter": False},
    )
    before = exact_match(smollm2_dir, held_out)
    result = run_training(spec, tmp_path / "run")
    after = exact_match(result.merged_dir, held_out)
    print(f"held-out exact match: {before:.0%} -> {after:.0%}")
    assert before <= 0.1
    assert after >= 0.8
