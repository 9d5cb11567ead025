"""kubetune's DPO matches TRL's DPOTrainer step by step on the real model (same data, seed, LoRA)."""

from __future__ import annotations

import pytest
import trl
from preference_data import swap_preference_rows
from synthetic_jobs import make_spec, swap_pairs, write_jsonl
from trl_reference import trl_logged_steps

from kubetune.trainer.metrics import read_metrics
from kubetune.trainer.run import run_training

STEPS = 4
PAIRS = 8  # one batch holds every pair, so the data order of the two trainers cannot differ
LR = 1e-3
BETA = 0.1
SEED = 42


def trl_dpo_steps(model_dir, rows: list[dict], tmp_path) -> list[dict]:
    """Per-step logs of TRL's DPOTrainer with the same LoRA adapter, optimizer and schedule."""
    logs = trl_logged_steps(
        trl.DPOTrainer, trl.DPOConfig, model_dir, rows, tmp_path,
        per_device_train_batch_size=PAIRS, max_steps=STEPS, learning_rate=LR, seed=SEED, beta=BETA,
        loss_type=["sigmoid"],
    )  # fmt: skip
    return [entry for entry in logs if "rewards/margins" in entry]


def test_dpo_sigmoid_loss_rewards_and_accuracy_match_trl(tmp_path, smollm2_dir):
    rows = swap_preference_rows(swap_pairs(3, PAIRS))
    data = write_jsonl(tmp_path / "pref.jsonl", rows)
    spec = make_spec(
        smollm2_dir,
        data,
        tmp_path / "run",
        objective="dpo",
        dpo={"beta": BETA, "loss_type": "sigmoid"},
        dataset={"format": "preference"},
        training={"max_steps": STEPS, "batch_size": PAIRS, "learning_rate": LR, "seed": SEED, "max_seq_len": 64},
        output={"save_adapter": False, "save_merged": False},
    )
    run_training(spec, tmp_path / "run")
    ours = read_metrics(tmp_path / "run" / "output" / "metrics.jsonl")
    theirs = trl_dpo_steps(smollm2_dir, rows, tmp_path)
    assert len(ours) == len(theirs) == STEPS
    for step, (mine, ref) in enumerate(zip(ours, theirs, strict=True), start=1):
        pairs = [
            (mine.loss, ref["loss"]),
            (mine.objective["chosen_reward"], ref["rewards/chosen"]),
            (mine.objective["rejected_reward"], ref["rewards/rejected"]),
            (mine.objective["reward_margin"], ref["rewards/margins"]),
            (mine.objective["reward_accuracy"], ref["rewards/accuracies"]),
        ]
        print(step, pairs)
        for got, want in pairs:
            # TRL rounds the logged loss to 4 decimals; rewards start at exactly 0 (LoRA B = 0)
            assert got == pytest.approx(want, rel=1e-3, abs=1e-4), f"step {step}: {pairs}"
    assert ours[-1].loss < ours[0].loss
