"""Time to checkpoint on SIGTERM, per model size: what a preempted job needs from its grace period.

Each case trains a job with the real trainer under ``python -m kubetune.trainer.launch`` (one
process), waits for two logged steps, then sends SIGTERM to the launcher, as the kubelet does
to a pod's first process. Measured: seconds from SIGTERM to the launcher's exit (the current
step finishes, every rank agrees, the checkpoint is written, the processes exit), the
checkpoint's own write time (``checkpoint_s`` in metrics.jsonl), its size, and the exit status
(75: preempted, resumable).

    python benchmarks/preemption_checkpoint.py --model /path/to/smollm2 --out benchmarks/results/cpu-preemption.json

``--model`` is a Hugging Face model folder with a tokenizer (SmolLM2-135M-Instruct converted
from its GGUF, as tests/conftest.py does). Cases: that model with LoRA and full fine-tuning, and
a larger random-weight Llama of the same tokenizer with LoRA and full. On a GPU, ``--shapes 1b,8b``
replaces the larger model with the 1B and 8B shapes of ``gpu_finetune.py`` (random bf16 weights
built on the GPU; 8B with LoRA only, as its full fine-tune does not fit one GPU).

    python benchmarks/preemption_checkpoint.py --model /path/to/tokenizer-and-model --shapes 1b,8b --out /tmp/p.json
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

LARGE = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
             num_key_value_heads=4, head_dim=64)  # fmt: skip


def large_model(source: Path, target: Path) -> Path:
    """``source``'s architecture and tokenizer scaled up to :data:`LARGE` (random weights, seed 0)."""
    import torch
    import transformers

    if (target / "config.json").exists():
        return target
    config = transformers.AutoConfig.from_pretrained(source)
    config.update(LARGE)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(target)
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def shaped_model(source: Path, target: Path, shape: str) -> Path:
    """A random bf16 Llama of one of ``gpu_finetune.SHAPES``, with ``source``'s tokenizer, built on the GPU."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_finetune import SHAPES, save_random_llama

    return save_random_llama(SHAPES[shape], source, target)


def write_data(path: Path, rows: int = 64) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            handle.write(json.dumps({"prompt": f"Add {i} and {i + 1}:", "completion": f" {2 * i + 1}"}) + "\n")
    return path


def run_case(name: str, model: Path, method: str, data: Path, work: Path) -> dict:
    run = work / name
    spec = {
        "name": name,
        "output_dir": str(run),
        "trainer": {
            "model": {"path": str(model)},
            "dataset": {"path": str(data), "format": "completion"},
            "method": method,
            **({"lora": {"r": 16}} if method == "lora" else {}),
            "training": {"max_steps": 1000, "batch_size": 1, "max_seq_len": 32},
            "output": {"save_merged": False},
        },
    }
    run.mkdir(parents=True)
    config = run / "job.yaml"
    config.write_text(yaml.safe_dump(spec), encoding="utf-8")
    command = [sys.executable, "-m", "kubetune.trainer.launch", "--standalone", "--nproc-per-node", "1"]
    command += ["-m", "kubetune.trainer", "--config", str(config)]
    log = (run / "log.txt").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    metrics = run / "output" / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        if proc.poll() is not None:
            raise SystemExit(f"{name}: the job exited early ({proc.returncode}); see {run / 'log.txt'}")
        time.sleep(0.05)
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    step_s = records[1]["elapsed_s"] - records[0]["elapsed_s"]
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait()
    sigterm_to_exit_s = time.monotonic() - sent
    log.close()
    last = json.loads(metrics.read_text().splitlines()[-1])
    checkpoint = run / "output" / "checkpoints" / f"step-{last['step']}"
    size = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    return {
        "case": name,
        "method": method,
        "exit_status": code,
        "step_s": round(step_s, 2),
        "checkpoint_write_s": last.get("checkpoint_s"),
        "sigterm_to_exit_s": round(sigterm_to_exit_s, 2),
        "checkpoint_mib": round(size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--shapes", default="", help="gpu_finetune.py shapes (1b,8b) for the larger models")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kt-preempt-"))
    work.mkdir(parents=True, exist_ok=True)
    data = write_data(work / "train.jsonl")
    # --model may be a tokenizer folder only (no weights) when --shapes gives the models.
    has_weights = any(args.model.glob("*.safetensors"))
    models = [("smollm2-135m", args.model, ("lora", "full"))] if has_weights else []
    for shape in filter(None, args.shapes.split(",")):
        methods = ("lora",) if shape == "8b" else ("lora", "full")
        models.append((f"llama-random-{shape}", shaped_model(args.model, work / f"model-{shape}", shape), methods))
    if not args.shapes:
        models.append(("llama-random-large", large_model(args.model, work / "large-model"), ("lora", "full")))
    import transformers

    def parameters(path: Path) -> int:
        config = transformers.AutoConfig.from_pretrained(path)
        with __import__("torch").device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        return sum(p.numel() for p in model.parameters())

    cases = []
    for label, path, methods in models:
        count = parameters(path)
        for method in methods:
            result = run_case(f"{label}-{method}", path, method, data, work)
            result["parameters_m"] = round(count / 1e6, 1)
            print(json.dumps(result), flush=True)
            cases.append(result)
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.machine()}), shared"
    report = {"device": device, "cases": cases}
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
