"""Every speed lever under DDP and FSDP2: 2 gloo processes train exactly like 1 (losses, gradient norms, weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from synthetic_jobs import make_spec, swap_pairs, swap_rows, write_jsonl

from kubetune.trainer.run import run_training

LEVERS = {
    "plain": {},
    "packing": {"packing": True},
    "chunked_loss": {"chunked_loss": True},
    "fused_lora": {"fused_lora": True},
    "selective_checkpointing": {"gradient_checkpointing": True, "gradient_checkpointing_fraction": 0.5},
    "all": {"packing": True, "chunked_loss": True, "fused_lora": True, "gradient_checkpointing": True},
}
TRAINING = {"max_steps": 3, "learning_rate": 3e-3, "max_seq_len": 48}
RUN_JOBS = Path(__file__).with_name("run_jobs.py")


def run_jobs_under_torchrun(specs, processes: int) -> None:
    """Run ``specs`` one after another in one ``torchrun --nproc-per-node processes`` launch."""
    configs = []
    for spec in specs:
        run_dir = Path(spec.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        configs.append(run_dir / "job.yaml")
        configs[-1].write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    done = subprocess.run([*command, str(RUN_JOBS), *map(str, configs)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def metrics(run_dir: Path) -> list[dict]:
    """The run's metrics records."""
    return [json.loads(line) for line in (run_dir / "output" / "metrics.jsonl").read_text().splitlines()]


def assert_same_training(got_dir: Path, want_dir: Path, label: str) -> None:
    """Same losses and gradient norms at every step, and the same trained adapter."""
    got, want = metrics(got_dir), metrics(want_dir)
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=1e-4), label
    assert [r["grad_norm"] for r in got] == pytest.approx([r["grad_norm"] for r in want], rel=1e-3), label
    assert [r["real_tokens"] for r in got] == [r["real_tokens"] for r in want], label
    final_got = load_file(got_dir / "output" / "adapter" / "adapter_model.safetensors")
    final_want = load_file(want_dir / "output" / "adapter" / "adapter_model.safetensors")
    assert final_got.keys() == final_want.keys(), label
    for name, tensor in final_want.items():
        assert (final_got[name] - tensor).norm() <= 1e-3 * tensor.norm(), f"{label}: {name}"


def test_every_lever_under_ddp_and_fsdp_matches_one_process(tmp_path, tiny_llama_dir):
    # 7 rows of different lengths: the last global batch of 3 is dealt 2 + 1 (uneven ranks).
    data = write_jsonl(tmp_path / "data.jsonl", swap_rows(swap_pairs(11, 7)))
    lora = {"r": 4, "alpha": 8, "target_modules": "all-linear"}

    def spec(name: str, lever: dict, batch: int, distributed: str = "auto"):
        training = {**TRAINING, **lever, "batch_size": batch, "distributed": distributed}
        return make_spec(
            tiny_llama_dir, data, tmp_path / name, training=training, lora=lora, output={"save_merged": False}
        )

    for name, lever in LEVERS.items():
        run_training(spec(f"one-{name}", lever, batch=4), tmp_path / f"one-{name}")
    multi = [
        spec(f"{s}-{name}", lever, batch=2, distributed=s) for s in ("ddp", "fsdp") for name, lever in LEVERS.items()
    ]
    run_jobs_under_torchrun(multi, processes=2)
    for strategy in ("ddp", "fsdp"):
        for name in LEVERS:
            assert_same_training(tmp_path / f"{strategy}-{name}", tmp_path / f"one-{name}", f"{strategy} {name}")
    # Each lever keeps the math: the one-process runs agree with each other too.
    for name in LEVERS:
        assert_same_training(tmp_path / f"one-{name}", tmp_path / "one-plain", f"one process {name}")
