"""objective: kto: TRL parity, the data checks and the loss against its formula."""

from __future__ import annotations

import pytest
import trl
from synthetic_jobs import make_spec, swap_pairs, swap_prompt, write_jsonl
from trl_reference import trl_logged_steps

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
    logs = trl_logged_steps(
        trl.KTOTrainer, trl.KTOConfig, model_dir, rows, tmp_path,
        per_device_train_batch_size=ROWS, max_steps=STEPS, learning_rate=LR, seed=SEED, beta=BETA,
        desirable_weight=DESIRABLE_WEIGHT, undesirable_weight=UNDESIRABLE_WEIGHT,
    )  # fmt: skip
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
