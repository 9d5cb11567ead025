"""The fault suite's job: a tiny real model trained by 2 gloo processes, and how to inspect its outputs."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import torch
import yaml
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from kubetune.backends.local.backend import job_processes, job_tag
from kubetune.client import TrainerClient
from kubetune.spec.base import validate_config
from kubetune.spec.job import JobSpec
from kubetune.trainer.checkpoint import STATE_DIR, complete_checkpoints

WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "rocket", "garden", "silver", "window")
STEPS = 24
EVERY = 4
# Run by torchrun in place of the trainer: rank 0 stalls inside one checkpoint's write (see its docstring).
STALLING_TRAINER = Path(__file__).with_name("stalling_trainer.py")


def tiny_model(source: Path, target: Path) -> Path:
    """Shrink ``source``'s architecture to 2 layers x 64 wide, random weights (seed 0), real tokenizer."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(source)
    config.update(
        {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
        }
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(target)
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def write_swap_data(path: Path, rows: int = 64) -> Path:
    """Completion rows of the word-swap task."""
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(rows):
            a, b = rng.sample(WORDS, 2)
            handle.write(json.dumps({"prompt": f"swap: {a} {b} =>", "completion": f" {b} {a}"}) + "\n")
    return path


@dataclass
class FaultJob:
    """The job every trainer fault runs: full fine-tune, fp32, checkpoints every few steps."""

    training: dict = field(
        default_factory=lambda: {
            "max_steps": STEPS,
            "batch_size": 2,
            "learning_rate": 1e-3,
            "lr_scheduler": "cosine",
            "warmup_steps": 2,
            "max_seq_len": 32,
            "checkpoint_every": EVERY,
            "keep_checkpoints": 3,
        }
    )

    def spec(self, model: Path, data: Path, run_dir: Path, name: str = "fault", **job) -> JobSpec:
        """The job spec (2 processes per node unless ``job`` says otherwise)."""
        trainer = {
            "model": {"path": str(model)},
            "dataset": {"path": str(data), "format": "completion"},
            "method": "full",
            "training": self.training,
            "output": {"save_merged": True},
        }
        fields = {"name": name, "procs_per_node": 2, "trainer": trainer, "output_dir": str(run_dir), **job}
        return validate_config(JobSpec, fields)


TINY_JOB = FaultJob()


def run_torchrun(
    spec: JobSpec, run_dir: Path, program: tuple[str, ...] = ("-m", "kubetune.trainer"), env: dict | None = None
) -> subprocess.Popen:
    """``torchrun --nproc-per-node P -m kubetune.trainer`` through kubetune's launcher (output captured);
    ``program`` may name a script
    to run instead, and ``env`` adds environment variables."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "job.yaml"
    config.write_text(yaml.safe_dump(spec.model_dump(mode="json")), encoding="utf-8")
    command = [sys.executable, "-m", "kubetune.trainer.launch", "--standalone", "--nproc-per-node"]
    command += [str(spec.procs_per_node), "--max-restarts", "0", *program, "--config", str(config)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
    )


def wait_for(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.01) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in the run directory."""
    return [step for step, _ in complete_checkpoints(run_dir / "output" / "checkpoints")]


def job_workers(client: TrainerClient, name: str) -> list[psutil.Process]:
    """The worker processes of a local job, by rank (torchrun sets RANK for workers only)."""
    backend = client.backend
    tag = job_tag(backend.home, name, client.get_job(name).created_at)
    workers = [p for p in job_processes(tag) if "RANK" in p.environ()]
    return sorted(workers, key=lambda p: int(p.environ()["RANK"]))


def launcher_workers(pid: int) -> list[psutil.Process]:
    """The workers a launcher (``run_torchrun``) started, by rank."""
    return sorted(psutil.Process(pid).children(), key=lambda p: int(p.environ()["RANK"]))


def kill_tree(pid: int) -> None:
    """SIGKILL a torchrun agent and every process under it, all at once (workers get sessions of their own)."""
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The exported model's tensors."""
    return load_file(run_dir / "output" / "merged" / "model.safetensors")


def assert_same_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], rtol: float = 1e-4) -> float:
    """Every tensor within ``rtol`` relative (max abs difference over max abs value); returns the worst."""
    assert got.keys() == expected.keys()
    worst = 0.0
    for name, want in expected.items():
        scale = want.abs().max().item() or 1.0
        worst = max(worst, (got[name] - want).abs().max().item() / scale)
    assert worst <= rtol, f"weights differ from the uninterrupted run by {worst:.2e} (relative)"
    return worst


def assert_checkpoints_intact(run_dir: Path) -> list[int]:
    """Every complete checkpoint loads in full (no truncated or corrupt file); returns their steps."""
    found = complete_checkpoints(run_dir / "output" / "checkpoints")
    for step, path in found:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        assert meta["step"] == step
        torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
        # Every shard of the torch.distributed.checkpoint folder reads back in full.
        with tempfile.TemporaryDirectory() as scratch:
            dcp_to_torch_save(path / STATE_DIR, Path(scratch) / "state.pt")
            assert torch.load(Path(scratch) / "state.pt", map_location="cpu", weights_only=False)["model"]
        for rank in range(meta["world_size"]):
            torch.load(path / f"rng-{rank}.pt", map_location="cpu", weights_only=False)
    return [step for step, _ in found]


def metric_records(run_dir: Path) -> list[dict]:
    """The records of ``metrics.jsonl`` (none before the first step)."""
    path = run_dir / "output" / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def metric_steps(run_dir: Path) -> list[int]:
    """The steps logged in ``metrics.jsonl``."""
    return [record["step"] for record in metric_records(run_dir)]


def trained_steps(log: str) -> list[int]:
    """Every step rank 0 reported training in a log (``step k/N | ...`` lines), runs and resumes together."""
    return [int(match) for match in re.findall(r"^step (\d+)/\d+ \|", log, flags=re.MULTILINE)]


def assert_same_losses(run_dir: Path, reference: Path, rtol: float = 1e-4) -> None:
    """Each step's loss within ``rtol`` (relative) of the reference run's."""
    got = {r["step"]: r["loss"] for r in metric_records(run_dir)}
    want = {r["step"]: r["loss"] for r in metric_records(reference)}
    assert got.keys() == want.keys()
    worst = max(abs(got[step] - loss) / abs(loss) for step, loss in want.items())
    assert worst <= rtol, f"losses differ from the uninterrupted run by {worst:.2e} (relative)"
