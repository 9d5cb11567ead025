"""Synthetic datasets with known answers, and small job specs on the real model, for trainer tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

from kubetune.spec.base import validate_config
from kubetune.spec.job import JobSpec
from kubetune.spec.trainer import method_sections

WORDS = [
    *("apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "rocket", "garden", "silver", "window"),
    *("candle", "forest", "butter", "mirror", "planet", "pencil", "orange", "marble", "castle", "dragon"),
    *("jacket", "violin", "rabbit"),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def swap_pairs(seed: int, count: int, exclude: set[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
    """Distinct word pairs (a, b), a != b, not in ``exclude``."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        pair = tuple(rng.sample(WORDS, 2))
        if pair not in exclude and pair not in pairs:
            pairs.append(pair)
    return pairs


def swap_prompt(a: str, b: str) -> str:
    """The synthetic task's prompt: swap two words."""
    return f"swap: {a} {b} =>"


def swap_rows(pairs: list[tuple[str, str]]) -> list[dict]:
    """Completion-format rows of the swap task: ``a b`` -> ``b a``."""
    return [{"prompt": swap_prompt(a, b), "completion": f" {b} {a}"} for a, b in pairs]


def make_spec(model_dir: Path, data_path: Path, run_dir: Path, **trainer: dict) -> JobSpec:
    """A JobSpec on the real model with small, fast defaults; ``trainer`` sections override them."""
    base = {
        "model": {"path": str(model_dir)},
        "dataset": {"path": str(data_path), "format": "completion"},
        "method": "lora",
        "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "training": {
            "max_steps": 4,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "max_seq_len": 32,
            "lr_scheduler": "constant",
            "checkpoint_every": None,  # these jobs test training, not checkpoints (a full fine-tune's is 1.6 GB)
        },
    }
    for key, value in trainer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    if "lora" not in method_sections(base["method"]) and "lora" not in trainer:
        del base["lora"]  # the default LoRA settings belong to LoRA methods only
    return validate_config(JobSpec, {"name": "t", "trainer": base, "output_dir": str(run_dir)})
