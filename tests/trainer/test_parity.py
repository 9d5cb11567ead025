"""Loss parity with a plain transformers + peft loop, and gradient-accumulation parity."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from synthetic_jobs import make_spec, swap_pairs, swap_rows, write_jsonl

from kubetune.trainer.run import run_training

SEED = 1234


def reference_losses(model_dir, rows: list[dict], steps: int, lr: float) -> list[float]:
    """The same fine-tune written with transformers + peft alone: whole dataset as one batch per step."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(SEED)
    config = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, config)
    sequences = []
    for row in rows:
        prompt = tokenizer(row["prompt"])["input_ids"]
        answer = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        sequences.append((prompt + answer, [-100] * len(prompt) + answer))
    longest = max(len(ids) for ids, _ in sequences)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([ids + [pad] * (longest - len(ids)) for ids, _ in sequences])
    labels = torch.tensor([lab + [-100] * (longest - len(lab)) for _, lab in sequences])
    mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids, _ in sequences])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_first_20_losses_match_a_plain_transformers_peft_loop(tmp_path, smollm2_dir):
    rows = swap_rows(swap_pairs(5, 8))
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    spec = make_spec(
        smollm2_dir,
        data,
        tmp_path / "run",
        training={"max_steps": 20, "batch_size": 8, "learning_rate": 1e-3, "seed": SEED},
        output={"save_adapter": False, "save_merged": False},
    )
    ours = run_training(spec, tmp_path / "run").losses
    theirs = reference_losses(smollm2_dir, rows, steps=20, lr=1e-3)
    assert theirs[-1] < 0.5 * theirs[0], "the reference did not learn; the comparison would be vacuous"
    worst = max(abs(a - b) / b for a, b in zip(ours, theirs, strict=True))
    print(f"loss {theirs[0]:.4f} -> {theirs[-1]:.4f}; largest relative difference over 20 steps: {worst:.2e}")
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1):
        assert a == pytest.approx(b, rel=0.02), f"step {step}: kubetune {a} vs reference {b}"


def test_batch_8_equals_batch_2_times_4_accumulation(tmp_path, smollm2_dir):
    # Prompts of different lengths: a mean of per-micro-batch means would differ from the token mean.
    rows = [
        *swap_rows(swap_pairs(6, 6)),
        {"prompt": "swap the following two words please: tiger lemon =>", "completion": " lemon tiger"},
        {"prompt": "s:", "completion": " a much longer answer than the others, with many target tokens"},
    ]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    results = {}
    for batch, accumulation in ((8, 1), (2, 4)):
        run = tmp_path / f"run-{batch}x{accumulation}"
        training = {"max_steps": 3, "batch_size": batch, "gradient_accumulation_steps": accumulation}
        spec = make_spec(smollm2_dir, data, run, training=training, output={"save_merged": False})
        result = run_training(spec, run)
        results[batch] = (result.losses, load_file(result.adapter_dir / "adapter_model.safetensors"))
    (losses_a, weights_a), (losses_b, weights_b) = results[8], results[2]
    assert losses_a == pytest.approx(losses_b, rel=1e-4)
    # Adam turns float noise in near-zero gradients into +-lr steps on single elements, so compare
    # each trained tensor as a whole.
    for name, tensor in weights_a.items():
        assert (tensor - weights_b[name]).norm() <= 1e-3 * tensor.norm(), name
