"""kubetune vs HF Trainer + PEFT: real tokens/s, MFU, peak memory and losses, one process per case.

Both sides get the same random-weight Llama-architecture model (same seed), the same samples
in the same order, the same LoRA config and batch. The baseline pads each batch to its
longest sample (as HF's collators do); kubetune runs its own ``train_step`` with the levers a
case names. Only real (non-padding) tokens count towards tokens/s and MFU.

    python benchmarks/gpu_finetune.py --out benchmarks/results/h100.json          # full table
    python benchmarks/gpu_finetune.py --tiny --device cpu --steps 2 --out /tmp/t.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=False),
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}  # fmt: skip
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


@dataclass
class Case:
    """One benchmark process: which side, model, data and levers."""

    name: str
    side: str  # "hf" or "kt"
    model: str
    method: str  # "lora", "qlora" (NF4 base) or "full"
    data: str  # "fixed" or "var"
    batch: int
    checkpointing: float = 0.0  # share of layers recomputed (0 = none)
    packing: bool = False
    chunked_loss: bool = False
    compile: str = ""  # "", "layers" (each decoder layer) or "decoder" (the whole stack)
    fused_lora: bool = False


def full_cases() -> list[Case]:
    """The committed table: each target's HF baseline and kubetune's best levers, plus lever rows.

    Round 1's one-lever-at-a-time rows (packing, chunked CE, checkpointing share, per-layer
    compile) are in ``results/h100-80gb-hbm3.json``; these rows measure round 2's levers.
    """
    return [
        Case("8b-lora-var/hf", "hf", "8b", "lora", "var", 16, checkpointing=1.0),
        Case("8b-lora-var/kt-pack+ce+nockpt+cmp+fused", "kt", "8b", "lora", "var", 16, 0.0, True, True, "layers", True),
        Case("8b-lora-fixed/hf", "hf", "8b", "lora", "fixed", 4, checkpointing=1.0),
        Case("8b-lora-fixed/kt-ce+nockpt+cmp+fused", "kt", "8b", "lora", "fixed", 4, 0.0, False, True, "layers", True),
        Case("1b-full-fixed/hf", "hf", "1b", "full", "fixed", 4),
        Case("1b-full-fixed/kt-ce+compile", "kt", "1b", "full", "fixed", 4, 0.0, False, True, "layers"),
        Case("8b-qlora-var/hf", "hf", "8b", "qlora", "var", 4, checkpointing=1.0),
        Case("8b-qlora-var/kt-pack+ce+sac.5+fused", "kt", "8b", "qlora", "var", 4, 0.5, True, True, "", True),
        Case("8b-qlora-var/kt-pack+ce+cmp+fused", "kt", "8b", "qlora", "var", 4, 0.0, True, True, "layers", True),
        Case("1b-full-fixed/kt-ce+compile-decoder", "kt", "1b", "full", "fixed", 4, 0.0, False, True, "decoder"),
        Case("8b-lora-fixed/kt-ce+nockpt+compile", "kt", "8b", "lora", "fixed", 4, 0.0, False, True, "layers"),
        # Round 3: the 1B full fine-tune at batch 8 on both sides (larger GEMMs), whole-decoder compile.
        Case("1b-full-fixed-bs8/hf", "hf", "1b", "full", "fixed", 8),
        Case("1b-full-fixed-bs8/kt-ce+compile", "kt", "1b", "full", "fixed", 8, 0.0, False, True, "layers"),
        Case("1b-full-fixed-bs8/kt-ce+compile-decoder", "kt", "1b", "full", "fixed", 8, 0.0, False, True, "decoder"),
    ]  # fmt: skip


def tiny_cases(device: str) -> list[Case]:
    """Every code path on a tiny model (CPU smoke test, and the first GPU check; compile on GPU only)."""
    compiled = [
        Case("tiny-lora-var/kt-pack+ce+cmp+fused", "kt", "tiny", "lora", "var", 4, 1.0, True, True, "layers", True),
        Case("tiny-full-fixed/kt-ce+compile-decoder", "kt", "tiny", "full", "fixed", 2, 0.0, False, True, "decoder"),
    ]
    try:
        import bitsandbytes  # noqa: F401

        quantized = [
            Case("tiny-qlora-var/hf", "hf", "tiny", "qlora", "var", 4, checkpointing=1.0),
            Case("tiny-qlora-var/kt-pack+ce+sac.5+fused", "kt", "tiny", "qlora", "var", 4, 0.5, True, True, "", True),
        ]
    except ImportError:
        quantized = []
    return (compiled if device == "cuda" else []) + quantized + [
        Case("tiny-lora-var/hf", "hf", "tiny", "lora", "var", 4, checkpointing=1.0),
        Case("tiny-lora-var/kt-pack+ce+sac.5+fused", "kt", "tiny", "lora", "var", 4, 0.5, True, True, "", True),
        Case("tiny-full-fixed/hf", "hf", "tiny", "full", "fixed", 2),
        Case("tiny-full-fixed/kt-ce", "kt", "tiny", "full", "fixed", 2, 0.0, False, True),
    ]  # fmt: skip


def sample_lengths(kind: str, count: int, max_len: int, seed: int) -> list[int]:
    """Fixed ``max_len`` sequences, or lognormal (median ~220, sigma 1) clipped to [32, max_len]."""
    import random

    if kind == "fixed":
        return [max_len] * count
    rng = random.Random(seed)
    return [min(max_len, max(32, round(rng.lognormvariate(math.log(220), 1.0)))) for _ in range(count)]


def save_random_llama(shape: dict, tokenizer_dir: Path, target: Path) -> Path:
    """A random-weight (seed 0) bf16 Llama of ``shape`` saved to ``target`` with ``tokenizer_dir``'s
    tokenizer, as a model initializer leaves it; built on the GPU when there is one. Kept if
    ``target`` already holds a model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (target / "config.json").is_file():
        return target
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM._from_config(LlamaConfig(**shape, max_position_embeddings=4096), dtype=torch.bfloat16)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(target)
    return target


def make_examples(case: Case, count: int, max_len: int, vocab: int):
    """Random token samples; the first quarter of each is an untrained prompt."""
    import torch

    from kubetune.trainer.data.formats import IGNORE_INDEX, Example

    gen = torch.Generator().manual_seed(1234)
    out = []
    for n in sample_lengths(case.data, count, max_len, seed=99):
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        out.append(Example(ids, [IGNORE_INDEX if i < max(1, n // 4) else t for i, t in enumerate(ids)]))
    return out


def build_model(case: Case, device: str):
    """The random-weight Llama model, identical for both sides (same seed, same device)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**SHAPES[case.model], max_position_embeddings=4096, rope_theta=500000.0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.config.use_cache = False
    return model


def quantize_nf4(model, device: str) -> None:
    """Replace every decoder linear with a bitsandbytes NF4 ``Linear4bit`` (double quantization), in place.

    What ``from_pretrained(..., quantization_config=BitsAndBytesConfig(load_in_4bit=True,
    bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True))`` builds, without a checkpoint on disk.
    """
    import bitsandbytes as bnb
    import torch

    compute = torch.bfloat16 if device == "cuda" else torch.float32
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or child is model.get_output_embeddings():
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False, compute_dtype=compute,
                                      compress_statistics=True, quant_type="nf4", device="meta")  # fmt: skip
            layer.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4"
            ).to(device)
            setattr(parent, name, layer)
    if device == "cuda":
        torch.cuda.empty_cache()


def lora_config():
    """The LoRA both sides use: r=16, alpha=32, all linear layers, no dropout."""
    from kubetune.spec.trainer import LoraConfig

    return LoraConfig(r=16, alpha=32.0, dropout=0.0, target_modules="all-linear")


def flops_per_step(model_cfg, method: str, lengths: list[int], params: int) -> float:
    """Useful FLOPs on real tokens: k*N per token (LoRA 4, full 6) + causal attention (x3 for fwd+bwd)."""
    k = 6 if method == "full" else 4  # QLoRA: dequantization is overhead, not model FLOPs
    tokens = sum(lengths)
    attn = 3 * 4 * model_cfg.num_hidden_layers * model_cfg.hidden_size * sum(n * (n + 1) / 2 for n in lengths)
    return k * params * tokens + attn


def matmul_params(model) -> int:
    """Parameters that take part in matmuls: all but the input embedding (counted once when tied)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    total = sum(p.numel() for p in base.parameters())
    if not base.config.tie_word_embeddings:
        total -= base.get_input_embeddings().weight.numel()
    return total


def step_timer(device: str):
    """A Trainer callback that times each optimizer step (CUDA synchronised) into ``.times`` and
    keeps each logged loss in ``.losses``: how the baselines of these benchmarks are measured."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.losses: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return StepTimer()


def run_hf(case: Case, model, examples, steps: int, device: str):
    """HF Trainer + PEFT, padding to the longest sample of each batch; returns step times and losses."""
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainingArguments

    from kubetune.trainer.data.batching import collate

    if case.method == "qlora":  # the usual QLoRA recipe: PEFT's k-bit preparation with checkpointing
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=bool(case.checkpointing),
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif case.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if case.method in ("lora", "qlora"):
        lc = lora_config()
        model = get_peft_model(
            model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=0.0, target_modules="all-linear")
        )
        if case.checkpointing:
            model.enable_input_require_grads()
    timer = step_timer(device)

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    def collator(rows):
        batch = collate(rows, pad_token_id=0)
        return batch

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=case.batch, max_steps=steps, learning_rate=2e-4,
            lr_scheduler_type="constant", max_grad_norm=1.0, logging_steps=1, report_to=[], save_strategy="no",
            bf16=device == "cuda", use_cpu=device == "cpu", optim="adamw_torch", dataloader_num_workers=0,
            remove_unused_columns=False, weight_decay=0.0,
        )  # fmt: skip
        trainer = InOrder(model=model, args=args, train_dataset=examples, data_collator=collator, callbacks=[timer])
        trainer.train()
    return timer.times, timer.losses, model


def run_kt(case: Case, model, examples, steps: int, device: str):
    """kubetune's own train_step with the case's levers; returns step times and losses."""
    import torch

    from kubetune.spec.trainer import LLMConfig, TrainingConfig
    from kubetune.trainer.build import prepare_model
    from kubetune.trainer.kernels.compilation import compile_decoder
    from kubetune.trainer.loop import TrainingObjective, train_step
    from kubetune.trainer.optim import build_optimizer

    training = TrainingConfig(
        batch_size=case.batch, learning_rate=2e-4, lr_scheduler="constant", max_grad_norm=1.0,
        precision="bf16" if device == "cuda" else "fp32", packing=case.packing, chunked_loss=case.chunked_loss,
        gradient_checkpointing=bool(case.checkpointing), gradient_checkpointing_fraction=case.checkpointing or 1.0,
        compile=case.compile == "layers", fused_lora=case.fused_lora,
    )  # fmt: skip
    adapter = {"lora": lora_config()} if case.method != "full" else {}
    config = LLMConfig(method=case.method, training=training, **adapter)
    # The trainer's own model unit: training settings, adapter, device and speed levers.
    model = prepare_model(model, config, torch.device(device))
    if case.compile == "decoder":  # a benchmark-only variant: the whole decoder as one graph
        compile_decoder(model)
    model.train()
    optimizer = build_optimizer(model, training)
    objective = TrainingObjective(model, training.chunked_loss)
    times, losses = [], []
    dev = torch.device(device)
    for step in range(steps):
        micro = [examples[step * case.batch : (step + 1) * case.batch]]
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = train_step(objective, micro, optimizer, training, pad_token_id=0, device=dev)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(result.loss)
    return times, losses, model


def run_case(case: Case, steps: int, warmup: int, device: str) -> dict:
    """Run one case in this process and return its measurements."""
    import torch

    model = build_model(case, device)
    params = matmul_params(model)
    if case.method == "qlora":
        quantize_nf4(model, device)
    max_len = 2048 if case.model != "tiny" else 128
    examples = make_examples(case, case.batch * steps, max_len, model.config.vocab_size)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runner = run_hf if case.side == "hf" else run_kt
    times, losses, model = runner(case, model, examples, steps, device)
    measured = range(warmup, steps)
    step_lengths = [[len(ex.input_ids) for ex in examples[s * case.batch : (s + 1) * case.batch]] for s in measured]
    real = [sum(lengths) for lengths in step_lengths]
    padded = [case.batch * max(lengths) for lengths in step_lengths]
    seconds = sum(times[s] for s in measured)
    flops = sum(flops_per_step(model.config, case.method, lengths, params) for lengths in step_lengths)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in gpu), None)
    return {
        **asdict(case),
        "gpu": gpu,
        "steps": steps,
        "warmup": warmup,
        "real_tokens_per_s": sum(real) / seconds,
        "padding_share": 1 - sum(real) / sum(padded),
        "tflops": flops / seconds / 1e12,
        "mfu": flops / seconds / 1e12 / peak if peak else None,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "step_seconds": times,
        "losses": losses,
        "matmul_params": params,
    }


@dataclass
class Table:
    """Results of all cases, with kubetune/HF ratios against the same model, method, data and batch."""

    results: list[dict] = field(default_factory=list)

    def render(self) -> str:
        def key(r: dict) -> tuple:
            return r["model"], r["method"], r["data"], r["batch"]

        hf = {key(r): r for r in self.results if r["side"] == "hf" and "error" not in r}
        lines = [f"{'case':38} {'tok/s':>9} {'x HF':>6} {'MFU':>6} {'mem GiB':>8} {'pad':>5}  losses (first, last)"]
        for r in self.results:
            if "error" in r:
                lines.append(f"{r['name']:38} FAILED: {r['error'][-150:]}")
                continue
            base = hf.get(key(r))
            ratio = r["real_tokens_per_s"] / base["real_tokens_per_s"] if base else float("nan")
            mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "   -  "
            mem = f"{r['peak_mem_gib']:8.1f}" if r["peak_mem_gib"] is not None else "       -"
            losses = f"{r['losses'][0]:.4f}, {r['losses'][-1]:.4f}" if r["losses"] else "-"
            speed = f"{r['real_tokens_per_s']:9.0f} {ratio:6.2f}"
            lines.append(f"{r['name']:38} {speed} {mfu} {mem} {r['padding_share']:5.2f}  {losses}")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model: every code path in seconds")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per case (including warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--only", default="", help="comma-separated substrings: run matching cases only")
    parser.add_argument("--out", default="", help="write the JSON results here")
    parser.add_argument("--case", default="", help=argparse.SUPPRESS)  # child process: run this case alone
    args = parser.parse_args(argv)
    cases = tiny_cases(args.device) if args.tiny else full_cases()
    if args.case:
        case = next(c for c in cases if c.name == args.case)
        print("RESULT " + json.dumps(run_case(case, args.steps, args.warmup, args.device)), flush=True)
        return 0
    if args.only:
        cases = [c for c in cases if any(s in c.name for s in args.only.split(","))]
    table = Table()
    for case in cases:
        cmd = [sys.executable, __file__, "--case", case.name, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--device", args.device] + (["--tiny"] if args.tiny else [])  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode == 0 and line:
            result = json.loads(line.removeprefix("RESULT "))
        else:
            result = {**asdict(case), "error": (proc.stderr or proc.stdout)[-2000:]}
        result["wall_s"] = time.perf_counter() - started
        table.results.append(result)
        print(f"[{result['wall_s']:.0f}s] {case.name}: {'FAILED' if 'error' in result else 'ok'}", flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(table.results, fh, indent=1)
    print(table.render())
    return 0 if all("error" not in r for r in table.results) else 1


if __name__ == "__main__":
    sys.exit(main())
