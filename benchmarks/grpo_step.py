"""GRPO: generation time vs training time per step, through the trainer (``run_training``).

For each model shape (SmolLM2-135M's and Llama-3.2-1B's, random weights, saved to disk with a
word-level tokenizer by ``defaults.save_model``), one GRPO job: LoRA r=16 all-linear, every speed
setting ``auto`` (bf16 on a GPU), ``batch_size`` 8 prompts of 64 tokens x ``num_generations`` 8 =
64 completions of up to 128 tokens per step, sampled with ``grpo.engine: hf`` (the policy's own
``generate``, KV cache, adapters on), one regex reward, ``beta`` 0.04 (reference log-probs with
the adapters off). The job's ``metrics.jsonl`` gives each step's ``generation_s`` (sampling and
scoring) and ``training_s`` (the forward/backward/optimizer rest); the first step is left out.
A vLLM engine is not built, so there is no vLLM row.

    python benchmarks/grpo_step.py --out benchmarks/results/<gpu>-grpo-step.json     # GPU
    python benchmarks/grpo_step.py --tiny --out /tmp/grpo.json                      # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import defaults
from defaults import word

PROMPT_TOKENS = 64


def write_prompts(path: Path, count: int, vocab_size: int) -> None:
    """``count`` prompt rows of :data:`PROMPT_TOKENS` random words (one word, one token)."""
    rng = random.Random(7)
    rows = [
        {"prompt": " ".join(word(rng.randrange(vocab_size - 1)) for _ in range(PROMPT_TOKENS))} for _ in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def run_shape(shape: str, work: Path, steps: int, batch: int, group: int, new_tokens: int, device: str) -> dict:
    """One GRPO job on ``shape``; the per-step times of its metrics (the first step left out)."""
    import torch

    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec
    from kubetune.trainer.metrics import read_metrics
    from kubetune.trainer.run import run_training

    model_dir = work / f"model-{shape}"
    defaults.save_model(shape, model_dir, device)
    vocab_size = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    data = work / f"prompts-{shape}.jsonl"
    write_prompts(data, batch * steps, vocab_size)
    run_dir = work / f"run-{shape}"
    job = {
        "name": f"grpo-{shape}",
        "output_dir": str(run_dir),
        "trainer": {
            "model": {"path": str(model_dir)},
            "dataset": {"path": str(data), "format": "prompt"},
            "method": "lora",
            "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"},
            "objective": "grpo",
            "grpo": {
                "num_generations": group,
                "max_new_tokens": new_tokens,
                "beta": 0.04,
                "rewards": [{"function": "regex", "pattern": r".*w7.*"}],
            },
            "training": {
                "max_steps": steps,
                "batch_size": batch,
                "max_seq_len": PROMPT_TOKENS + new_tokens,
                "learning_rate": 1e-5,
                "checkpoint_every": None,
            },
            "output": {"save_adapter": False, "save_merged": False},
        },
    }
    spec = validate_config(JobSpec, job)
    started = time.perf_counter()
    run_training(spec, run_dir)
    wall = time.perf_counter() - started
    records = read_metrics(run_dir / "output" / "metrics.jsonl")
    timed = records[1:] or records
    generation = sum(r.objective["generation_s"] for r in timed) / len(timed)
    training = sum(r.objective["training_s"] for r in timed) / len(timed)
    length = sum(r.objective["completion_length"] for r in timed) / len(timed)
    completions = batch * group
    row = {
        "shape": shape,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "completions_per_step": completions,
        "prompt_tokens": PROMPT_TOKENS,
        "max_new_tokens": new_tokens,
        "mean_completion_length": round(length, 1),
        "generation_s_per_step": round(generation, 3),
        "training_s_per_step": round(training, 3),
        "generation_share": round(generation / (generation + training), 3),
        "generated_tokens_per_s": round(completions * length / generation, 1),
        "gpu_peak_gib": timed[-1].gpu_peak_gib,
        "timed_steps": len(timed),
        "job_wall_s": round(wall, 1),
        "steps": [
            {"step": r.step, "generation_s": r.objective["generation_s"], "training_s": r.objective["training_s"]}
            for r in records
        ],
    }
    print(json.dumps({k: v for k, v in row.items() if k != "steps"}), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model, CPU, a few tokens: every path in seconds")
    parser.add_argument("--shapes", default="smollm2,1b", help="comma-separated shapes of gpu_finetune.SHAPES")
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps per job (the first untimed)")
    parser.add_argument("--work", default="/tmp/kubetune-grpo", help="model, data and run directories")
    parser.add_argument("--out", default="", help="write the JSON results here")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        rows = [run_shape("tiny", work, 2, 2, 2, 8, "cpu")]
    else:
        rows = [run_shape(shape, work, args.steps, 8, 8, 128, "cuda") for shape in args.shapes.split(",")]
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
