"""What a user gets with no speed settings: ``kubetune train -f job.yaml`` vs the best hand-tuned row vs HF.

For each case, one process per row, on the same data in the same order:

- ``hf``: HF Trainer + PEFT (``gpu_finetune.run_hf``), padding to the longest sample;
- ``best``: kubetune's ``train_step`` with the case's hand-picked levers (``gpu_finetune.run_kt``);
- ``defaults``: the product path, ``python -m kubetune.cli train -f job.yaml`` on the local
  backend (SQLite store, supervisor, torchrun, the trainer), the job giving only the model
  folder, the dataset file, the method, the batch and ``max_seq_len`` (the data's length);
  every speed setting is ``auto``. The random-weight model is saved to disk first (with a
  word-level tokenizer whose every word is one token) and the variable-length data is written
  as a jsonl file of ``completion`` rows.

The ``hf`` and ``best`` rows train on the trainer's own micro-batches (``prepare_data`` on the
same file, ``micro_batches`` with the job's seed), so all three rows see the same tokens per
step. Each row also reports the memory planner's estimate next to its measured peak
(``torch.cuda.max_memory_allocated``; the product path logs it as ``gpu_peak_gib`` in
``metrics.jsonl``). Time to first step: from launching the CLI to the first metrics record.

    python benchmarks/defaults.py --out benchmarks/results/<gpu>-defaults.json            # H100
    python benchmarks/defaults.py --tiny --device cpu --out /tmp/defaults.json           # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_finetune as gf

SEED = 42  # the job's training.seed (the default)
MAX_SEQ_LEN = 2048


@dataclass(frozen=True)
class Bench:
    """One case: the model, method, data and batch, and the hand-tuned levers of its best row."""

    name: str
    model: str
    method: str
    data: str  # "var" or "fixed"
    batch: int
    steps: int
    best: gf.Case


def cases(tiny: bool, device: str) -> list[Bench]:
    """The cases of the committed table (or their tiny versions for the CPU smoke test)."""
    if tiny:
        lever = dict(compile="layers" if device == "cuda" else "")
        return [
            Bench("tiny-lora-var", "tiny", "lora", "var", 4, 4,
                  gf.Case("best", "kt", "tiny", "lora", "var", 4, 0.0, True, True, fused_lora=True, **lever)),
            Bench("tiny-lora-fixed", "tiny", "lora", "fixed", 2, 4,
                  gf.Case("best", "kt", "tiny", "lora", "fixed", 2, 0.0, False, True, fused_lora=True, **lever)),
        ]  # fmt: skip
    return [
        Bench("8b-lora-var", "8b", "lora", "var", 16, 10,
              gf.Case("best", "kt", "8b", "lora", "var", 16, 0.0, True, True, "layers", True)),
        Bench("8b-lora-fixed", "8b", "lora", "fixed", 4, 10,
              gf.Case("best", "kt", "8b", "lora", "fixed", 4, 0.0, False, True, "layers", True)),
        Bench("8b-qlora-var", "8b", "qlora", "var", 4, 10,
              gf.Case("best", "kt", "8b", "qlora", "var", 4, 0.0, True, True, "layers", True)),
        Bench("8b-qlora-bs8-var", "8b", "qlora", "var", 8, 10,
              gf.Case("best", "kt", "8b", "qlora", "var", 8, 0.0, True, True, "layers", True)),
    ]  # fmt: skip


def hf_case(bench: Bench) -> gf.Case:
    """HF's row: full checkpointing at 8B (without it the padded batches do not fit), like gpu_finetune."""
    return gf.Case("hf", "hf", bench.model, bench.method, bench.data, bench.batch,
                   checkpointing=1.0 if bench.model == "8b" else 0.0)  # fmt: skip


# ---------------------------------------------------------------- files on disk: model, tokenizer, data


def word(token: int) -> str:
    """The word the benchmark tokenizer maps to ``token``."""
    return f"w{token}"


def save_model(model_key: str, folder: Path, device: str) -> None:
    """Save the random-weight model of ``gf.build_model`` and a word-level tokenizer (one word, one token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if (folder / "config.json").is_file():
        return
    model = gf.build_model(gf.Case("save", "kt", model_key, "lora", "var", 1), device)
    vocab_size = model.config.vocab_size
    vocab = {word(i): i for i in range(vocab_size - 1)}
    vocab["<eos>"] = vocab_size - 1
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=word(0)))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<eos>")
    model.config.eos_token_id = model.config.pad_token_id = vocab_size - 1
    model.config.bos_token_id = None
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    model.save_pretrained(folder, max_shard_size="5GB")


def write_dataset(bench: Bench, path: Path, vocab_size: int) -> None:
    """``batch x steps`` completion rows; a row of n tokens: n/4 prompt words, the rest and EOS the answer."""
    import random

    rng = random.Random(1234)
    rows = []
    for n in gf.sample_lengths(
        bench.data, bench.batch * bench.steps, MAX_SEQ_LEN if bench.model != "tiny" else 128, 99
    ):
        ids = [rng.randrange(vocab_size - 1) for _ in range(n - 1)]
        split = max(1, n // 4)
        rows.append({"prompt": " ".join(map(word, ids[:split])), "completion": " ".join(map(word, ids[split:]))})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def job_config(bench: Bench, model_dir: Path, data: Path) -> dict:
    """The user's job: model, dataset, method, batch and the data's length; nothing about speed."""
    return {
        "name": f"defaults-{bench.name}",
        "trainer": {
            "model": {"path": str(model_dir)},
            "dataset": {"path": str(data), "format": "completion"},
            "method": bench.method,
            "training": {"batch_size": bench.batch, "max_seq_len": MAX_SEQ_LEN if bench.model != "tiny" else 128},
            "output": {"save_merged": False},
        },
    }


# ---------------------------------------------------------------- rows


def trainer_batches(bench: Bench, model_dir: Path, data: Path):
    """The trainer's micro-batches of the job, in its order (``prepare_data`` + ``micro_batches``)."""
    from transformers import AutoTokenizer

    from kubetune.spec.trainer import LLMConfig
    from kubetune.trainer.data.batching import micro_batches
    from kubetune.trainer.data.pipeline import prepare_data

    config = LLMConfig.model_validate(job_config(bench, model_dir, data)["trainer"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prepared = prepare_data(config.dataset, data, tokenizer, config.training.max_seq_len, SEED)
    return config, list(micro_batches(prepared.train, bench.batch, 0, SEED))


def plan_row(shape, setup) -> float:
    """The planner's peak estimate in GiB."""
    from kubetune.planning import GIB, plan_memory

    return plan_memory(shape, setup).peak / GIB


def run_row(bench: Bench, side: str, work: Path, device: str, warmup: int) -> dict:
    """Run the ``hf`` or ``best`` row in this process; returns its measurements and the planner's estimate."""
    import torch

    from kubetune.planning import ModelShape, PlanSetup
    from kubetune.trainer.speed_plan import device_info, resolve_speed

    model_dir, data = work / f"model-{bench.model}", work / f"{bench.name}.jsonl"
    config, batches = trainer_batches(bench, model_dir, data)
    case = hf_case(bench) if side == "hf" else bench.best
    model = gf.build_model(case, device)
    params = gf.matmul_params(model)
    if case.method == "qlora":
        gf.quantize_nf4(model, device)
    flat = [example for batch in batches for example in batch]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runner = gf.run_hf if side == "hf" else gf.run_kt
    times, losses, model = runner(case, model, flat, bench.steps, device)
    lengths = [[len(ex.input_ids) for ex in batch] for batch in batches]
    measured = range(warmup, bench.steps)
    real = sum(sum(lengths[s]) for s in measured)
    seconds = sum(times[s] for s in measured)
    flops = sum(gf.flops_per_step(model.config, case.method, lengths[s], params) for s in measured)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = next((v for k, v in gf.PEAK_TFLOPS.items() if k in gpu), None)
    shape = ModelShape.from_model_dir(model_dir)
    packed = case.packing
    tokens = max(sum(b) if packed else len(b) * max(b) for b in lengths)
    setup = PlanSetup(
        case.method, "bf16" if device == "cuda" else "fp32", tokens, case.checkpointing,
        compiled=bool(case.compile), fused_lora=case.fused_lora, chunked_loss=case.chunked_loss,
    )  # fmt: skip
    result = {
        "row": side,
        "levers": asdict(case),
        "gpu": gpu,
        "real_tokens_per_s": real / seconds,
        "mfu": flops / seconds / 1e12 / peak if peak else None,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "plan_gib": plan_row(shape, setup),
        "plan_tokens": tokens,
        "losses": losses,
        "step_seconds": times,
    }
    if side == "best":
        # What ``auto`` resolves to for the job on this device (the trainer does the same).
        speed = resolve_speed(config, device_info(torch.device(device)), 1, shape, lengths)
        result["auto"] = speed.describe()
        result["auto_plan_gib"] = speed.plan.peak / 2**30 if speed.plan else None
    return result


def run_defaults(bench: Bench, work: Path, warmup: int) -> dict:
    """The product path: ``kubetune train -f job.yaml`` on the local backend, timed from launch."""
    import yaml

    model_dir, data = work / f"model-{bench.model}", work / f"{bench.name}.jsonl"
    run_dir, home = work / "runs" / bench.name, work / "home"
    job = work / f"{bench.name}.yaml"
    job.write_text(yaml.safe_dump(job_config(bench, model_dir, data)))
    metrics = run_dir / "output" / "metrics.jsonl"
    # A rerun is a restart of the same job: its outputs go, its compile cache (run_dir/cache) stays.
    shutil.rmtree(run_dir / "output", ignore_errors=True)
    cmd = [sys.executable, "-m", "kubetune.cli", "train", "-f", str(job), "--output-dir", str(run_dir),
           "--home", str(home), "--replace"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first_step = None
    while proc.poll() is None:
        if first_step is None and metrics.is_file() and metrics.read_text().strip():
            first_step = time.perf_counter() - started
        time.sleep(0.2)
    wall = time.perf_counter() - started
    output = proc.stdout.read()
    logs = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "logs", job_config(bench, model_dir, data)["name"], "--home", str(home)],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    if proc.returncode != 0 or len(records) < bench.steps:
        return {"row": "defaults", "error": (output + logs)[-3000:]}
    timed = [r for r in records if r["step"] > warmup]
    seconds = sum(r["real_tokens"] / r["tokens_per_s"] for r in timed)
    return {
        "row": "defaults",
        "real_tokens_per_s": sum(r["real_tokens"] for r in timed) / seconds,
        "peak_mem_gib": max((r.get("gpu_peak_gib") or 0.0) for r in records) or None,
        "time_to_first_step_s": first_step,
        "wall_s": wall,
        "losses": [r["loss"] for r in records],
        "speed_line": next((ln for ln in logs.splitlines() if ln.startswith("speed: ")), None),
    }


# ---------------------------------------------------------------- driver


def child(argv: list[str]) -> dict:
    """``--row BENCH SIDE``: run one row in this (fresh) process."""
    args = parse(argv)
    bench = next(b for b in cases(args.tiny, args.device) if b.name == args.row[0])
    return run_row(bench, args.row[1], Path(args.work), args.device, args.warmup)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model: every path in seconds")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--rows", default="hf,best,defaults", help="which rows of each case")
    parser.add_argument("--restart", action="store_true", help="run the first case's product path twice")
    parser.add_argument("--work", default="/tmp/kubetune-defaults", help="model, data and run directories")
    parser.add_argument("--deadline", type=float, default=0, help="start no row after this many seconds")
    parser.add_argument("--out", default="", help="write the JSON results here")
    parser.add_argument("--row", nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def render(results: list[dict]) -> str:
    """The table: per case, HF, defaults and best rows with x HF, % of best, peak and plan."""
    lines = [
        f"{'case / row':30} {'tok/s':>8} {'x HF':>6} {'% best':>7} {'peak GiB':>9} {'plan GiB':>9} {'plan err':>9}"
    ]
    by_case: dict[str, dict[str, dict]] = {}
    for r in results:
        by_case.setdefault(r["case"], {})[r["row"]] = r
    for name, rows in by_case.items():
        hf, best = rows.get("hf", {}), rows.get("best", {})
        for side in ("hf", "defaults", "defaults-restart", "best"):
            r = rows.get(side)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"{name + ' / ' + side:30} FAILED: {r['error'][-200:]!r}")
                continue
            tps = r["real_tokens_per_s"]
            x_hf = tps / hf["real_tokens_per_s"] if "real_tokens_per_s" in hf else math.nan
            of_best = 100 * tps / best["real_tokens_per_s"] if "real_tokens_per_s" in best else math.nan
            peak = r.get("peak_mem_gib")
            plan = best.get("auto_plan_gib") if side.startswith("defaults") else r.get("plan_gib")
            err = f"{100 * (plan / peak - 1):+8.1f}%" if peak and plan else f"{'-':>9}"
            peak_s = f"{peak:9.1f}" if peak else f"{'-':>9}"
            plan_s = f"{plan:9.1f}" if plan else f"{'-':>9}"
            lines.append(f"{name + ' / ' + side:30} {tps:8.0f} {x_hf:6.2f} {of_best:6.1f}% {peak_s} {plan_s} {err}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.row:
        print("RESULT " + json.dumps(child(argv if argv is not None else sys.argv[1:])), flush=True)
        return 0
    started = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    selected = [
        b for b in cases(args.tiny, args.device) if not args.only or any(s in b.name for s in args.only.split(","))
    ]
    results: list[dict] = []

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))

    for bench in selected:
        save_model(bench.model, work / f"model-{bench.model}", args.device)
        vocab = json.loads((work / f"model-{bench.model}" / "config.json").read_text())["vocab_size"]
        write_dataset(bench, work / f"{bench.name}.jsonl", vocab)
        sides = args.rows.split(",") + (["defaults-restart"] if args.restart and bench is selected[0] else [])
        for side in sides:
            if args.deadline and time.perf_counter() - started > args.deadline:
                results.append({"case": bench.name, "row": side, "error": "skipped: deadline"})
                continue
            t0 = time.perf_counter()
            if side.startswith("defaults"):
                result = run_defaults(bench, work, args.warmup)
                result["row"] = side
            else:
                cmd = [sys.executable, __file__, "--row", bench.name, side, "--work", str(work), "--device",
                       args.device, "--warmup", str(args.warmup)] + (["--tiny"] if args.tiny else [])  # fmt: skip
                # As in gpu_finetune's rows; the product path gets the same from the trainer's own default.
                env = {**os.environ, "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                failed = {"error": (proc.stderr or proc.stdout)[-3000:]}
                result = json.loads(line[7:]) if proc.returncode == 0 and line else failed
                result["row"] = side
            result.update(case=bench.name, batch=bench.batch, steps=bench.steps, row_wall_s=time.perf_counter() - t0)
            results.append(result)
            status = "FAILED" if "error" in result else "ok"
            print(f"[{time.perf_counter() - started:.0f}s] {bench.name} / {side}: {status}", flush=True)
            save()
    print(render(results))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
