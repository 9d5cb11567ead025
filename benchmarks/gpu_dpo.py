"""DPO throughput: kubetune's trainer vs TRL's ``DPOTrainer`` on the same model, data and settings.

Both sides train the same random-weight Llama (saved to disk with a word-level tokenizer: one
word, one token, ``<eos>`` a special token) with LoRA (r 16, all linear layers) and DPO
(sigmoid, beta 0.1; the reference is the model with its adapters off) on the same preference
rows (random words; lognormal response lengths), bf16, the same batch of pairs, no gradient
checkpointing and no compile on either side. kubetune runs its product path in this process
(``run_training``: the trainer's own units; every other speed setting ``auto``, so packing is on);
TRL its ``DPOTrainer`` (padding; TRL 1.16 has disabled ``padding_free``).

Tokens per second count the real (non-padding) tokens of both responses of every pair (prompt
included), each side from its own batches (kubetune: ``real_tokens`` of ``metrics.jsonl``; TRL:
the attention mask of each batch), over the steps after ``--warmup``.

    python benchmarks/gpu_dpo.py --out benchmarks/results/h100-dpo.json          # one GPU
    python benchmarks/gpu_dpo.py --tiny --device cpu --out /tmp/dpo.json         # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_finetune as gf

BETA = 0.1
LR = 5e-6
LORA_R, LORA_ALPHA = 16, 32
SEED = 7


def save_model(model_key: str, folder: Path, device: str) -> int:
    """The random-weight model of ``gpu_finetune.build_model`` and a word-level tokenizer; returns the vocab size."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = gf.build_model(gf.Case("save", "kt", model_key, "lora", "var", 1), device)
    vocab_size = model.config.vocab_size
    vocab = {f"w{i}": i for i in range(vocab_size - 1)}
    vocab["<eos>"] = vocab_size - 1
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken("<eos>", normalized=False)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<eos>")
    model.config.eos_token_id = model.config.pad_token_id = vocab_size - 1
    model.config.bos_token_id = None
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    model.save_pretrained(folder, max_shard_size="5GB")
    return vocab_size


def preference_rows(count: int, vocab_size: int, max_response: int) -> list[dict]:
    """Rows of random words: a 64-word prompt, chosen and rejected of lognormal length (median 160)."""
    rng = random.Random(SEED)

    def words(n: int) -> str:
        return " " + " ".join(f"w{rng.randrange(1, vocab_size - 1)}" for _ in range(n))

    def length() -> int:
        return min(max_response, max(8, round(rng.lognormvariate(math.log(160), 0.8))))

    return [{"prompt": words(64).strip(), "chosen": words(length()), "rejected": words(length())} for _ in range(count)]


def run_kubetune(model_dir: Path, data: Path, work: Path, batch: int, steps: int, max_len: int, device: str) -> dict:
    """The product trainer in this process; per-step real tokens and seconds from ``metrics.jsonl``."""
    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec
    from kubetune.trainer.metrics import read_metrics
    from kubetune.trainer.run import run_training

    trainer = {
        "model": {"path": str(model_dir)},
        "dataset": {"path": str(data), "format": "preference"},
        "method": "lora",
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "dropout": 0.0, "target_modules": "all-linear"},
        "objective": "dpo",
        "dpo": {"beta": BETA, "loss_type": "sigmoid"},
        "training": {
            "max_steps": steps, "batch_size": batch, "learning_rate": LR, "lr_scheduler": "constant",
            "max_seq_len": max_len, "seed": SEED, "log_every": 1, "checkpoint_every": None,
            "precision": "bf16" if device == "cuda" else "fp32", "gradient_checkpointing": False, "compile": False,
        },
        "output": {"save_adapter": False, "save_merged": False},
    }  # fmt: skip
    spec = validate_config(JobSpec, {"name": "dpo-bench", "trainer": trainer, "output_dir": str(work)})
    run_training(spec, work)
    records = read_metrics(work / "output" / "metrics.jsonl")
    return {
        "tokens": [r.real_tokens for r in records],
        "seconds": [r.real_tokens / r.tokens_per_s for r in records],
        "losses": [r.loss for r in records],
        "peak_gib": max((r.gpu_peak_gib or 0.0) for r in records),
    }


def run_trl(model_dir: Path, rows: list[dict], batch: int, steps: int, max_len: int, device: str) -> dict:
    """TRL's DPOTrainer with the same LoRA, optimizer, schedule and data order (sequential)."""
    import peft
    import torch
    import trl
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    lora = peft.LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    torch.manual_seed(SEED)
    model = peft.get_peft_model(model, lora)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timer = gf.step_timer(device)
    tokens: list[int] = []

    class InOrder(trl.DPOTrainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, *args, **kwargs):
            tokens.append(int(inputs["attention_mask"].sum()))
            return super().compute_loss(model, inputs, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        args = trl.DPOConfig(
            output_dir=tmp, per_device_train_batch_size=batch, max_steps=steps, learning_rate=LR,
            lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0, weight_decay=0.0, optim="adamw_torch",
            beta=BETA, loss_type=["sigmoid"], seed=SEED, logging_steps=1, report_to=[], save_strategy="no",
            use_cpu=device == "cpu", bf16=device == "cuda", gradient_checkpointing=False, max_length=max_len,
            dataloader_num_workers=0,
        )  # fmt: skip
        trainer = InOrder(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.train()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    return {"tokens": tokens, "seconds": timer.times, "losses": timer.losses, "peak_gib": round(peak, 2)}


def summarise(name: str, run: dict, warmup: int) -> dict:
    """Tokens per second over the steps after ``warmup``."""
    tokens, seconds = run["tokens"][warmup:], run["seconds"][warmup:]
    return {
        "side": name,
        "real_tokens_per_s": round(sum(tokens) / sum(seconds), 1),
        "median_step_s": round(statistics.median(seconds), 4),
        "tokens_per_step": round(sum(tokens) / len(tokens), 1),
        "peak_gib": run["peak_gib"],
        "first_losses": [round(loss, 4) for loss in run["losses"][:3]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="1b", choices=sorted(gf.SHAPES))
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny model, few steps (a CPU smoke run)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.tiny:
        args.model, args.batch, args.steps, args.warmup = "tiny", 2, 3, 1
    max_response = 512 if args.model != "tiny" else 24
    max_len = 64 + 2 * max_response
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vocab = save_model(args.model, work / "model", args.device)
        rows = preference_rows(args.batch * args.steps, vocab, max_response)
        data = work / "pairs.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        kt = run_kubetune(work / "model", data, work / "run", args.batch, args.steps, max_len, args.device)
        trl_run = run_trl(work / "model", rows, args.batch, args.steps, max_len, args.device)
    import torch

    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows_out = [summarise("kubetune", kt, args.warmup), summarise("trl", trl_run, args.warmup)]
    report = {
        "gpu": gpu,
        "model": args.model,
        "batch_pairs": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "settings": f"LoRA r{LORA_R} all-linear, DPO sigmoid beta {BETA}, bf16 on CUDA, no checkpointing, no compile",
        "rows": rows_out,
        "speedup": round(rows_out[0]["real_tokens_per_s"] / rows_out[1]["real_tokens_per_s"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"DPO, {args.model} Llama, {args.batch} pairs/step, {gpu}")
    print(f"{'side':<10} {'real tok/s':>12} {'median step s':>14} {'tok/step':>10} {'peak GiB':>9}")
    for row in rows_out:
        print(
            f"{row['side']:<10} {row['real_tokens_per_s']:>12,.1f} {row['median_step_s']:>14.4f} "
            f"{row['tokens_per_step']:>10,.1f} {row['peak_gib']:>9}"
        )
    print(f"kubetune / TRL: {report['speedup']}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
