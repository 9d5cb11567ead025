"""objective: kto: TRL parity, the data checks and the loss against its formula."""

from __future__ import annotations

import pytest
import torch
import trl
from synthetic_jobs import make_spec, swap_pairs, swap_prompt, write_jsonl

from kubetune.trainer.metrics import read_metrics
from kubetune.trainer.run import run_training

STEPS = 3
ROWS = 8  # one batch holds every row, so the data order of the two trainers cannot differ
LR = 1e-3
BETA = 0.1
SEED = 42
DESIRABLE_WEIGHT = 1.0
UNDESIRABLE_WEIGHT = 1.25


def kto_rows(count: int, seed: int = 5) -> list[dict]:
    """Unpaired rows of the swap task: the swapped answer is desirable, the copy undesirable."""
    rows = []
    for index, (a, b) in enumerate(swap_pairs(seed, count)):
        desirable = index % 2 == 0
        rows.append(
            {"prompt": swap_prompt(a, b), "completion": f" {b} {a}" if desirable else f" {a} {b}", "label": desirable}
        )
    return rows


def trl_kto_steps(model_dir, rows: list[dict], tmp_path) -> list[dict]:
    """Per-step logs of TRL's KTOTrainer with the same LoRA adapter, optimizer and schedule."""
    import peft
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(SEED)  # kubetune seeds right before creating the adapter too
    lora = peft.LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    model = peft.get_peft_model(model, lora)
    logs: list[dict] = []

    class Keep(TrainerCallback):
        def on_log(self, args, state, control, logs_=None, **kwargs):
            logs.append(dict(kwargs.get("logs") or logs_ or {}))

    args = trl.KTOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=ROWS,
        max_steps=STEPS,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        weight_decay=0.0,
        optim="adamw_torch",
        beta=BETA,
        desirable_weight=DESIRABLE_WEIGHT,
        undesirable_weight=UNDESIRABLE_WEIGHT,
        seed=SEED,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        gradient_checkpointing=False,
        bf16=False,
        max_length=None,
        dataloader_num_workers=0,
    )
    trainer = trl.KTOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[Keep()]
    )
    trainer.train()
    return [entry for entry in logs if "kl" in entry and "loss" in entry]


def test_kto_loss_rewards_and_kl_match_trl(tmp_path, smollm2_dir):
    rows = kto_rows(ROWS)
    data = write_jsonl(tmp_path / "kto.jsonl", rows)
    spec = make_spec(
        smollm2_dir,
        data,
        tmp_path / "run",
        objective="kto",
        kto={"beta": BETA, "desirable_weight": DESIRABLE_WEIGHT, "undesirable_weight": UNDESIRABLE_WEIGHT},
        dataset={"format": "kto"},
        training={"max_steps": STEPS, "batch_size": ROWS, "learning_rate": LR, "seed": SEED, "max_seq_len": 64},
        output={"save_adapter": False, "save_merged": False},
    )
    run_training(spec, tmp_path / "run")
    ours = read_metrics(tmp_path / "run" / "output" / "metrics.jsonl")
    theirs = trl_kto_steps(smollm2_dir, rows, tmp_path)
    assert len(ours) == len(theirs) == STEPS
    for step, (mine, ref) in enumerate(zip(ours, theirs, strict=True), start=1):
        pairs = [
            (mine.loss, ref["loss"]),
            (mine.objective["chosen_reward"], ref["rewards/chosen"]),
            (mine.objective["rejected_reward"], ref["rewards/rejected"]),
            (mine.objective["kl"], ref["kl"]),
        ]
        print(step, pairs)
        for got, want in pairs:
            # TRL rounds the logged loss to 4 decimals; rewards and KL start at exactly 0 (LoRA B = 0)
            assert got == pytest.approx(want, rel=1e-3, abs=1e-4), f"step {step}: {pairs}"
    assert ours[-1].loss < ours[0].loss
