"""Multi-process training with real torch.distributed (gloo) processes launched by torchrun."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from synthetic_jobs import make_spec, swap_pairs, swap_rows, write_jsonl

from kubetune.trainer.run import run_training


def torchrun(spec, run_dir, processes: int) -> list[dict]:
    """Run the trainer under ``torchrun --nproc-per-node processes``; return its metrics records."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "job.yaml"
    config.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    done = subprocess.run(
        [*command, "-m", "kubetune.trainer", "--config", str(config)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = (run_dir / "output" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_ddp_two_processes_match_one_process_on_the_same_global_batch(tmp_path, smollm2_dir):
    # 7 train rows: the last global batch of 3 is dealt 2 + 1, so the ranks' shares are uneven.
    data = write_jsonl(tmp_path / "data.jsonl", swap_rows(swap_pairs(3, 10)))
    training = {"max_steps": 3, "learning_rate": 3e-3, "eval_every": 1}
    common = {"output": {"save_merged": False}, "dataset": {"eval_fraction": 0.3}}
    one = make_spec(smollm2_dir, data, tmp_path / "one", training={**training, "batch_size": 4}, **common)
    two = make_spec(smollm2_dir, data, tmp_path / "two", training={**training, "batch_size": 2}, **common)
    run_training(one, tmp_path / "one")
    single = [json.loads(line) for line in (tmp_path / "one" / "output" / "metrics.jsonl").read_text().splitlines()]
    records = torchrun(two, tmp_path / "two", processes=2)
    for key in ("loss", "eval_loss", "real_tokens"):
        assert [r[key] for r in records] == pytest.approx([r[key] for r in single], rel=1e-3), key
    assert (tmp_path / "two" / "output" / "adapter" / "adapter_model.safetensors").is_file()


def test_fsdp2_full_fine_tune_under_gloo_matches_one_process(tmp_path, smollm2_dir):
    data = write_jsonl(tmp_path / "data.jsonl", swap_rows(swap_pairs(4, 2)))
    training = {"max_steps": 2, "learning_rate": 1e-4}
    one = make_spec(
        smollm2_dir,
        data,
        tmp_path / "one",
        method="full",
        training={**training, "batch_size": 2},
        output={"save_merged": False},
    )
    two = make_spec(
        smollm2_dir,
        data,
        tmp_path / "two",
        method="full",
        training={**training, "batch_size": 1, "distributed": "fsdp"},
    )
    single = run_training(one, tmp_path / "one").losses
    assert [r["loss"] for r in torchrun(two, tmp_path / "two", processes=2)] == pytest.approx(single, rel=1e-3)
    # The sharded weights were gathered into one ordinary checkpoint.
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "two" / "output" / "merged")
    assert sum(p.numel() for p in merged.parameters()) > 100_000_000
