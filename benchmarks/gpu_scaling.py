"""Multi-GPU scaling: DDP LoRA on 1/2/4 GPUs, FSDP2 full fine-tune, FSDP2 70B-shaped LoRA, resume and multi-node.

Each throughput row is one ``torchrun`` launch of this script's worker on the first N GPUs
(``CUDA_VISIBLE_DEVICES``), built from the trainer's own units: random-weight Llama models
(``--tiny``: a 2-layer one on CPU/gloo), the method and speed levers of ``LLMConfig``,
:class:`~kubetune.trainer.loop.TrainingObjective` wrapped by ``wrap_model`` (DDP) or built on
the meta device and sharded by ``shard_model`` (FSDP2, each rank initialising only its shards),
and ``train_step``. The resume and multi-node rows run ``python -m kubetune.trainer`` and the
local backend on a small random model saved to disk. Only real tokens count; FLOPs as in
``gpu_finetune.py`` (LoRA 4N, full 6N per token plus causal attention), MFU against 989 TFLOP/s.

    python benchmarks/gpu_scaling.py --out-dir /tmp/scaling                # on a 4-GPU machine
    python benchmarks/gpu_scaling.py --tiny --out-dir /tmp/scaling-cpu     # CPU smoke (gloo)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_finetune import PEAK_TFLOPS, SHAPES, flops_per_step, matmul_params, sample_lengths, save_random_llama

SCALING_SHAPES = {
    **SHAPES,
    # Llama-3.3-70B-Instruct's config.json (no download: random weights).
    "70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
    "small": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, vocab_size=49152, tie_word_embeddings=False),
}  # fmt: skip


@dataclass
class Case:
    """One torchrun launch of the throughput worker."""

    name: str
    model: str
    method: str
    strategy: str
    gpus: int
    data: str  # "var" (lognormal lengths) or "fixed" (max_len)
    batch: int
    max_len: int = 2048
    packing: bool = True
    chunked_loss: bool = True
    fused_lora: bool = True
    compile: bool = False
    checkpointing: float = 0.0
    steps: int = 6
    warmup: int = 2


@dataclass
class Row:
    """What one case measured (rank 0's view; memory is the maximum over ranks)."""

    case: dict
    ok: bool
    error: str = ""
    tokens_per_s: float = 0.0
    tokens_per_s_per_gpu: float = 0.0
    mfu: float = 0.0
    peak_gpu_gib: float = 0.0
    peak_host_gib: float = 0.0
    setup_s: float = 0.0
    losses: list[float] = field(default_factory=list)


def cases(tiny: bool) -> list[Case]:
    """The throughput rows, in the order they run."""
    if tiny:
        return [
            Case("tiny-lora-var-ddp-1", "tiny", "lora", "ddp", 1, "var", 4, 256, steps=3, warmup=1),
            Case("tiny-lora-var-ddp-2", "tiny", "lora", "ddp", 2, "var", 4, 256, steps=3, warmup=1),
            Case("tiny-full-fixed-fsdp-2", "tiny", "full", "fsdp", 2, "fixed", 2, 128, False, steps=3, warmup=1),
            Case("tiny-lora-var-fsdp-2", "tiny", "lora", "fsdp", 2, "var", 2, 128, steps=3, warmup=1),
        ]
    return [
        Case("8b-lora-var-ddp-1gpu", "8b", "lora", "ddp", 1, "var", 8, steps=24, warmup=4),
        Case("8b-lora-var-ddp-2gpu", "8b", "lora", "ddp", 2, "var", 8, steps=24, warmup=4),
        Case("8b-lora-var-ddp-4gpu", "8b", "lora", "ddp", 4, "var", 8, steps=24, warmup=4),
        Case("8b-full-fixed-fsdp-4gpu", "8b", "full", "fsdp", 4, "fixed", 2, packing=False, compile=True),
        Case("8b-full-fixed-fsdp-4gpu-b4", "8b", "full", "fsdp", 4, "fixed", 4, packing=False, compile=True),
        Case("70b-lora-fixed-fsdp-4gpu", "70b", "lora", "fsdp", 4, "fixed", 1, packing=False, checkpointing=1.0,
             steps=4, warmup=1),
    ]  # fmt: skip


def _examples(case: Case, count: int, vocab: int):
    import torch

    from kubetune.trainer.data.formats import IGNORE_INDEX, Example

    gen = torch.Generator().manual_seed(1234)
    out = []
    for n in sample_lengths(case.data, count, case.max_len, seed=99):
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        out.append(Example(ids, [IGNORE_INDEX if i < max(1, n // 4) else t for i, t in enumerate(ids)]))
    return out


def _init_shards(model) -> None:
    """Random weights for a model materialised from the meta device (every rank fills its own shards)."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif "lora_B" in name:
                param.zero_()
            else:
                param.normal_(0.0, 0.02)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        for module in base.modules():
            if "RotaryEmbedding" in type(module).__name__:
                base._init_weights(module)


def worker(case: Case, out_file: Path) -> None:
    """One rank of a throughput case (run under torchrun)."""
    import torch
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM

    from kubetune.spec.trainer import LLMConfig, LoraConfig, TrainingConfig
    from kubetune.trainer.build import prepare_model
    from kubetune.trainer.data.batching import micro_batches
    from kubetune.trainer.distributed import init_distributed, shard_model, wrap_model
    from kubetune.trainer.loop import TrainingObjective, train_step
    from kubetune.trainer.model_loading import DTYPES
    from kubetune.trainer.optim import build_optimizer
    from kubetune.trainer.sharded_loading import storage_precision

    started = time.perf_counter()
    ctx = init_distributed()
    cuda = ctx.device.type == "cuda"
    training = TrainingConfig(
        batch_size=case.batch, learning_rate=2e-4, lr_scheduler="constant", max_grad_norm=1.0,
        precision="bf16" if cuda else "fp32", packing=case.packing, chunked_loss=case.chunked_loss,
        gradient_checkpointing=bool(case.checkpointing), gradient_checkpointing_fraction=case.checkpointing or 1.0,
        compile=case.compile, fused_lora=case.fused_lora and case.method == "lora", distributed=case.strategy,
        max_seq_len=case.max_len,
    )  # fmt: skip
    lora = {"lora": LoraConfig(r=16, alpha=32.0, target_modules="all-linear")} if case.method == "lora" else {}
    config = LLMConfig(method=case.method, training=training, **lora)
    cfg = LlamaConfig(**SCALING_SHAPES[case.model], max_position_embeddings=4096, rope_theta=500000.0)
    cfg.use_cache = False
    sharded = case.strategy == "fsdp" and ctx.world_size > 1
    dtype = DTYPES[storage_precision(config) if sharded else training.precision]
    torch.manual_seed(0)
    device = torch.device("meta") if sharded else ctx.device
    with device:
        model = LlamaForCausalLM._from_config(cfg, dtype=dtype)
        # The trainer's own model unit: training settings, adapter, device and speed levers.
        model = prepare_model(model, config, device)
    objective = TrainingObjective(model, training.chunked_loss)
    if sharded:
        shard_model(objective, training.precision)
        objective.to_empty(device=ctx.device)
        _init_shards(model)
    else:
        objective = wrap_model(objective, ctx, "ddp", training.precision)
    params = matmul_params(model)
    optimizer = build_optimizer(objective, training)
    global_batch = case.batch * ctx.world_size
    examples = _examples(case, global_batch * case.steps, cfg.vocab_size)
    mine = list(micro_batches(examples, case.batch, 0, 7, ctx.rank, ctx.world_size))
    setup = time.perf_counter() - started
    times, losses, lengths = [], [], []
    for step in range(case.steps):
        if cuda:
            torch.cuda.synchronize()
        dist.barrier() if ctx.world_size > 1 else None
        t0 = time.perf_counter()
        result = train_step(objective, [mine[step]], optimizer, training, pad_token_id=0, device=ctx.device)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(round(result.loss, 4))
        batch = examples[step * global_batch : (step + 1) * global_batch]
        lengths.append([len(ex.input_ids) for ex in batch])
    timed = slice(case.warmup, None)
    seconds = sum(times[timed])
    tokens = sum(sum(x) for x in lengths[timed])
    flops = sum(flops_per_step(cfg, case.method, x, params) for x in lengths[timed])
    host_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    peak = torch.tensor([torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0, host_gib], device=ctx.device)
    if ctx.world_size > 1:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    if ctx.is_main:
        peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if cuda and k in torch.cuda.get_device_name()), 989.0)
        row = Row(
            asdict(case), True, tokens_per_s=round(tokens / seconds, 1),
            tokens_per_s_per_gpu=round(tokens / seconds / ctx.world_size, 1),
            mfu=round(flops / seconds / ctx.world_size / (peak_tflops * 1e12), 4),
            peak_gpu_gib=round(float(peak[0]), 2), peak_host_gib=round(float(peak[1]), 2), setup_s=round(setup, 1),
            losses=losses,
        )  # fmt: skip
        out_file.write_text(json.dumps(asdict(row)))
    if ctx.world_size > 1:
        dist.destroy_process_group()


def _torchrun(gpus: int, args: list[str], env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """One torchrun launch; past ``timeout`` its whole process group is killed and the status is 124."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}", *args]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        code = 124
    print(
        f"  [{time.perf_counter() - started:.0f}s] torchrun x{gpus} {' '.join(args[-2:])[-90:]} -> {code}", flush=True
    )
    return subprocess.CompletedProcess(command, code, output, "")


def run_case(case: Case, work_dir: Path, tiny: bool) -> Row:
    """Launch one throughput case on the first ``case.gpus`` GPUs."""
    result_file = work_dir / f"{case.name}.json"
    env = {} if tiny else {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(case.gpus))}
    env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    done = _torchrun(case.gpus, [__file__, "--worker", json.dumps(asdict(case)), "--result", str(result_file)], env)
    if done.returncode != 0 or not result_file.is_file():
        tail = (done.stdout + done.stderr)[-1500:]
        oom = "OutOfMemoryError" in tail or "out of memory" in tail
        return Row(asdict(case), False, "OOM: " + tail[-600:] if oom else tail[-1200:] or "failed")
    return Row(**json.loads(result_file.read_text()))


# ---------------------------------------------------------------- real-entry-point rows


def _small_model(folder: Path, tokenizer_dir: Path) -> Path:
    """A random 'small' Llama (~50M parameters) saved with a real tokenizer, as a model initializer leaves it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SCALING_SHAPES["small"], max_position_embeddings=1024)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


def _dataset(path: Path, rows: int) -> Path:
    import random

    rng = random.Random(3)
    words = ["alpha", "river", "stone", "cloud", "tiger", "lemon", "piano", "rocket", "garden", "silver"]
    with path.open("w") as handle:
        for _ in range(rows):
            prompt = " ".join(rng.choices(words, k=rng.randint(5, 60)))
            handle.write(json.dumps({"prompt": prompt, "completion": " " + " ".join(sorted(prompt.split()))}) + "\n")
    return path


def _spec(model: Path, data: Path, run: Path, batch: int, steps: int, **training):
    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec

    trainer = {
        "model": {"path": str(model)},
        "dataset": {"path": str(data), "format": "completion"},
        "method": "lora",
        "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"},
        "training": {"max_steps": steps, "batch_size": batch, "learning_rate": 1e-3, "max_seq_len": 256,
                     "lr_scheduler": "cosine", "warmup_steps": 2, "precision": "bf16", "packing": True,
                     "chunked_loss": True, **training},
        "output": {"save_merged": False},
    }  # fmt: skip
    return validate_config(JobSpec, {"name": run.name, "trainer": trainer, "output_dir": str(run)})


def _speed_defaults(tiny: bool) -> dict:
    """Training settings that leave precision, packing and the chunked loss to the trainer's ``auto``
    (what a user gets), or fp32 for the CPU smoke run."""
    return {"precision": "fp32" if tiny else "auto", "packing": "auto", "chunked_loss": "auto"}


def _write_spec(spec, run: Path) -> Path:
    import yaml

    run.mkdir(parents=True, exist_ok=True)
    (run / "job.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return run / "job.yaml"


def _losses(output_dir: Path) -> list[float]:
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def resume_rows(work_dir: Path, tokenizer_dir: Path, tiny: bool) -> dict:
    """Kill one rank of a 2-process FSDP2 LoRA run after its first checkpoint; resume on 2, 1 and 4 processes."""
    work = work_dir / "resume"
    work.mkdir(parents=True, exist_ok=True)
    model = _small_model(work_dir / "model", tokenizer_dir)
    data = _dataset(work / "data.jsonl", 256)
    steps, every = 12, 4
    # Compilation is off: resuming does not depend on it, and it would dominate each launch's time.
    common = {"checkpoint_every": every, "keep_checkpoints": 3, "distributed": "fsdp", "compile": False}
    if tiny:
        common["precision"] = "fp32"
    env = lambda n: {} if tiny else {"CUDA_VISIBLE_DEVICES": ",".join(map(str, range(n)))}  # noqa: E731
    entry = ["-m", "kubetune.trainer", "--config"]
    straight = work / "straight"
    done = _torchrun(2, [*entry, str(_write_spec(_spec(model, data, straight, 4, steps, **common), straight))], env(2))
    report: dict = {"straight_rc": done.returncode}
    if done.returncode != 0:
        report["error"] = (done.stdout + done.stderr)[-1500:]
        return report
    broken = work / "broken"
    config = _write_spec(_spec(model, data, broken, 4, steps, **common), broken)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *entry, str(config)]
    proc = subprocess.Popen(command, env={**os.environ, **env(2)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import psutil

    checkpoints = broken / "output" / "checkpoints"
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob("step-*/meta.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    workers = [
        p for p in psutil.Process(proc.pid).children(recursive=True) if "kubetune.trainer" in " ".join(p.cmdline())
    ]
    victim = workers[-1]
    victim.send_signal(signal.SIGKILL)  # one rank dies; torchrun tears the job down
    proc.wait(timeout=300)
    kept = sorted(int(p.parent.name.split("-")[1]) for p in checkpoints.glob("step-*/meta.json"))
    report.update(killed_rank_pid=victim.pid, torchrun_rc=proc.returncode, checkpoints_after_kill=kept)
    resumed_from = max(kept)
    for name in ("resume-1", "resume-4"):
        shutil.copytree(broken, work / name)
    done = _torchrun(2, [*entry, str(config)], env(2))
    report["resume_2_rc"] = done.returncode
    import torch

    sizes = ((1, "resume-1"), (4, "resume-4")) if tiny or torch.cuda.device_count() >= 4 else ((1, "resume-1"),)
    for n, name in sizes:
        run = work / name
        spec = _spec(model, data, run, 8 // n, steps, **common)
        done = _torchrun(n, [*entry, str(_write_spec(spec, run))], env(n))
        report[f"resume_{n}_rc"] = done.returncode
        if done.returncode != 0:
            report[f"resume_{n}_error"] = (done.stdout + done.stderr)[-800:]
    want = _losses(straight / "output")
    report["resumed_from_step"] = resumed_from
    report["straight_losses"] = want
    for n, name in ((2, "broken"), (1, "resume-1"), (4, "resume-4")):
        if report.get(f"resume_{n}_rc") == 0:
            got = _losses(work / name / "output")
            report[f"losses_on_{n}"] = got
            report[f"max_rel_diff_on_{n}"] = max(abs(a - b) / abs(b) for a, b in zip(got, want, strict=True))
    return report


def entry_rows(work_dir: Path, tokenizer_dir: Path, tiny: bool) -> dict:
    """1B LoRA on variable-length text through ``python -m kubetune.trainer`` with default speed settings, 1 and 2 GPUs.

    Real tokens/s is the trainer's own ``tokens_per_s`` in metrics.jsonl, averaged over the steps
    after the first four (compilation and warm-up).
    """
    import random

    import torch

    work = work_dir / "entry"
    work.mkdir(parents=True, exist_ok=True)
    model = save_random_llama(SCALING_SHAPES["small" if tiny else "1b"], tokenizer_dir, work / "model")
    rng = random.Random(5)
    words = ["alpha", "river", "stone", "cloud", "tiger", "lemon", "piano", "rocket", "garden", "silver"]
    data = work / "data.jsonl"
    max_len, batch, steps = (256, 2, 6) if tiny else (2048, 8, 14)
    with data.open("w") as handle:
        for n in sample_lengths("var", 4 * batch * steps, max_len, seed=11):
            text = " ".join(rng.choices(words, k=max(4, n // 2)))
            handle.write(json.dumps({"prompt": text[: len(text) // 4], "completion": text[len(text) // 4 :]}) + "\n")
    report: dict = {"model": "random Llama 1B shape" if not tiny else "small", "batch_per_gpu": batch}
    counts = (1, 2) if tiny or torch.cuda.device_count() >= 2 else (1,)
    for n in counts:
        run = work / f"gpus-{n}"
        spec = _spec(model, data, run, batch, steps, max_seq_len=max_len, distributed="ddp", **_speed_defaults(tiny))
        env = {} if tiny else {"CUDA_VISIBLE_DEVICES": ",".join(map(str, range(n)))}
        done = _torchrun(n, ["-m", "kubetune.trainer", "--config", str(_write_spec(spec, run))], env, timeout=170)
        if done.returncode != 0:
            report[f"gpus_{n}_error"] = (done.stdout + done.stderr)[-1200:]
            continue
        report[f"gpus_{n}_speed"] = [line for line in done.stdout.splitlines() if "speed:" in line][-1:]
        records = [json.loads(line) for line in (run / "output" / "metrics.jsonl").read_text().splitlines()]
        timed = [r["tokens_per_s"] for r in records if r.get("tokens_per_s") and r["step"] > 4]
        report[f"gpus_{n}_tokens_per_s"] = round(sum(timed) / len(timed), 1)
        report[f"gpus_{n}_tokens_per_s_per_gpu"] = round(sum(timed) / len(timed) / n, 1)
    if "gpus_1_tokens_per_s" in report and "gpus_2_tokens_per_s" in report:
        report["per_gpu_efficiency_2"] = round(report["gpus_2_tokens_per_s_per_gpu"] / report["gpus_1_tokens_per_s"], 3)
    return report


def host_memory_rows(model: Path, tiny: bool) -> dict:
    """Peak host memory (RSS) per process while 4 FSDP2 processes (or one per GPU, if fewer) load ``model`` from disk.

    The processes then train 3 LoRA steps.

    Each rank builds the model on the meta device; rank 0 alone reads the safetensors files and
    broadcasts each rank's shards, so the bound is one copy of the weights on rank 0 (plus the
    runtime), not one per process.
    """
    import psutil

    run = model.parent / "hostmem"
    data = _dataset(model.parent / "hostmem-data.jsonl", 64)
    spec = _spec(model, data, run, 1, 3, distributed="fsdp", compile=False, **_speed_defaults(tiny))
    import torch

    procs = 4 if tiny or not torch.cuda.is_available() else min(4, torch.cuda.device_count())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
    command += ["-m", "kubetune.trainer", "--config", str(_write_spec(spec, run))]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    while proc.poll() is None:
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    peaks[child.pid] = max(peaks.get(child.pid, 0), child.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    output = proc.stdout.read() if proc.stdout else ""
    weights = sum(f.stat().st_size for f in model.glob("*.safetensors"))
    # The workers are the largest processes (torchrun itself and compile helpers are far smaller).
    ranks = sorted(peaks.values(), reverse=True)[:procs]
    report = {
        "rc": proc.returncode,
        "processes": procs,
        "weights_on_disk_gib": round(weights / 2**30, 2),
        "peak_rss_gib_per_worker": [round(r / 2**30, 2) for r in ranks],
        "peak_rss_gib_total": round(sum(ranks) / 2**30, 2),
    }
    if proc.returncode != 0:
        report["error"] = output[-1200:]
    return report


def multinode_rows(work_dir: Path, tokenizer_dir: Path, tiny: bool) -> dict:
    """The local backend: 2 nodes x 2 processes vs 1 node x 4 processes, same loss curve."""
    from kubetune.backends.local import LocalBackend
    from kubetune.client import BuiltinTrainer, LLMConfig, Name, TrainerClient

    work = work_dir / "multinode"
    model = _small_model(work_dir / "model", tokenizer_dir)
    work.mkdir(parents=True, exist_ok=True)
    data = _dataset(work / "data.jsonl", 256)
    trainer = _spec(model, data, work / "x", 2, 8, **({"precision": "fp32"} if tiny else {})).trainer
    config = LLMConfig.model_validate(trainer.model_dump(mode="json"))
    client = TrainerClient(LocalBackend(work / "home"))
    shapes = {"two-nodes": (2, 2), "one-node": (1, 4)}
    report: dict = {}
    for name, (nodes, procs) in shapes.items():
        client.train(trainer=BuiltinTrainer(config=config, num_nodes=nodes, procs_per_node=procs), options=[Name(name)])
        job = client.wait_for_job_status(name, timeout=600)
        report[f"{name}_status"] = f"{job.status} {job.reason or ''} {job.message or ''}".strip()
        if (job.output_dir / "metrics.jsonl").is_file():
            report[f"{name}_losses"] = _losses(job.output_dir)
    if "two-nodes_losses" in report and "one-node_losses" in report:
        pairs = zip(report["two-nodes_losses"], report["one-node_losses"], strict=True)
        report["max_rel_diff"] = max(abs(a - b) / abs(b) for a, b in pairs)
    return report


def table(rows: list[Row]) -> str:
    """The markdown table of the throughput rows."""
    lines = [
        "| case | GPUs | strategy | batch/GPU | real tok/s | tok/s/GPU | MFU | peak GPU GiB | peak host GiB "
        "| loss first → last |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        c = row.case
        if not row.ok:
            error = row.error.strip().splitlines()[-1][:80] if row.error.strip() else "failed"
            lines.append(f"| {c['name']} | {c['gpus']} | {c['strategy']} | {c['batch']} | {error} | | | | | |")
            continue
        lines.append(
            f"| {c['name']} | {c['gpus']} | {c['strategy']} | {c['batch']} | {row.tokens_per_s:.0f} | "
            f"{row.tokens_per_s_per_gpu:.0f} | {100 * row.mfu:.1f}% | {row.peak_gpu_gib:.1f} | "
            f"{row.peak_host_gib:.1f} | {row.losses[0]} → {row.losses[-1]} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the selected rows; print the table; write ``scaling.json`` and ``scaling.md`` to ``--out-dir``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, help="where scaling.json and scaling.md go")
    parser.add_argument("--work-dir", type=Path, help="models, runs and per-case results (default: --out-dir)")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument(
        "--only", default="", help="comma-separated case-name substrings, 'entry', 'resume', 'multinode'"
    )
    parser.add_argument("--tokenizer", type=Path, help="folder with a tokenizer for the small on-disk model")
    parser.add_argument("--host-memory-model", type=Path, help="measure host memory of FSDP2 ranks loading it")
    parser.add_argument("--worker")
    parser.add_argument("--result", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(Case(**json.loads(args.worker)), args.result)
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = args.work_dir or args.out_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    wanted = [w for w in args.only.split(",") if w]
    report: dict = {"device": _device_name()}
    rows = []
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 4
    for case in cases(args.tiny):
        if (wanted and not any(w in case.name for w in wanted)) or case.gpus > gpus:
            continue
        rows.append(run_case(case, work_dir, args.tiny))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        report["rows"] = [asdict(r) for r in rows]
        _save(args.out_dir, report, rows)
    for name, fn in (("entry", entry_rows), ("multinode", multinode_rows), ("resume", resume_rows)):
        if name == "multinode" and gpus < 4:
            continue
        if args.tokenizer and (not wanted or name in wanted):
            started = time.perf_counter()
            report[name] = fn(work_dir, args.tokenizer, args.tiny)
            report[name]["seconds"] = round(time.perf_counter() - started, 1)
            print(name, json.dumps(report[name])[:1500], flush=True)
            _save(args.out_dir, report, rows)
    if args.host_memory_model:
        report["host_memory"] = host_memory_rows(args.host_memory_model, args.tiny)
        print("host_memory", json.dumps(report["host_memory"])[:1500], flush=True)
        _save(args.out_dir, report, rows)
    print(f"\n{report['device']}\n\n{table(rows)}")


def _device_name() -> str:
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"


def _save(out_dir: Path, report: dict, rows: list[Row]) -> None:
    (out_dir / "scaling.json").write_text(json.dumps(report, indent=1))
    (out_dir / "scaling.md").write_text(f"{report['device']}\n\n{table(rows)}\n")


if __name__ == "__main__":
    main()
