"""The LLM Trainer's top level: from a job spec to trained, exported weights."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from kubetune.spec.job import JobSpec
from kubetune.trainer import loop
from kubetune.trainer.data.pipeline import prepare_data
from kubetune.trainer.export import export_adapter, export_merged
from kubetune.trainer.kernels.checkpointing import checkpoint_layers
from kubetune.trainer.kernels.compilation import compile_layers
from kubetune.trainer.kernels.packed_attention import use_packed_attention
from kubetune.trainer.metrics import MetricsWriter
from kubetune.trainer.model_loading import apply_method, count_parameters, load_model, load_tokenizer, resolve_local
from kubetune.trainer.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where the outputs are and how training went."""

    output_dir: Path
    adapter_dir: Path | None
    merged_dir: Path | None
    steps: int
    losses: list[float] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python and torch RNGs."""
    random.seed(seed)
    torch.manual_seed(seed)


def write_resolved_config(spec: JobSpec, output_dir: Path) -> Path:
    """Write the resolved job spec to ``output/config.yaml`` (atomically)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "config.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def run_training(spec: JobSpec, run_dir: Path) -> TrainResult:
    """Fine-tune as ``spec.trainer`` says, writing everything under ``run_dir/output``.

    Data and model are checked (tokenizer, dataset columns, model files) before the first
    step, so user errors surface as :class:`~kubetune.errors.KubetuneError` before compute.
    """
    config = spec.trainer
    training = config.training
    output_dir = run_dir / "output"
    write_resolved_config(spec, output_dir)
    seed_everything(training.seed)

    model_path = resolve_local(config.model.path, run_dir / "model", "trainer.model.path")
    dataset_path = resolve_local(config.dataset.path, run_dir / "dataset", "trainer.dataset.path")
    tokenizer = load_tokenizer(model_path, config.model)
    data = prepare_data(config.dataset, dataset_path, tokenizer, training.max_seq_len, training.seed)
    print(
        f"dataset: {len(data.train)} train / {len(data.eval)} eval examples from {data.rows_read} rows "
        f"({data.truncated} truncated to {training.max_seq_len} tokens, "
        f"{data.dropped_without_targets} without targets dropped)",
        flush=True,
    )

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(model_path, config.model, training.precision)
    if training.gradient_checkpointing:
        checkpoint_layers(model, training.gradient_checkpointing_fraction)
        model.config.use_cache = False
    model = apply_method(model, config).to(device)
    if training.packing:
        use_packed_attention(model)
    if training.compile:
        compile_layers(model)
    trainable, total = count_parameters(model)
    print(f"model: {model_path} | method {config.method} | trainable {trainable:,} of {total:,} parameters", flush=True)

    steps = loop.total_steps(len(data.train), training)
    optimizer = build_optimizer(model, training)
    scheduler = build_scheduler(optimizer, training, steps)
    stream = loop.MicroBatchStream(data.train, training, rank=0, world_size=1)
    metrics = MetricsWriter(output_dir / "metrics.jsonl", steps)
    losses = loop.run_loop(
        model, stream, optimizer, scheduler, training, steps, tokenizer.pad_token_id, device, metrics
    )

    model.eval()
    is_peft = config.method != "full"
    adapter_dir = export_adapter(model, tokenizer, output_dir) if is_peft and config.output.save_adapter else None
    merged_dir = export_merged(model, tokenizer, output_dir, is_peft) if config.output.save_merged else None
    return TrainResult(output_dir, adapter_dir, merged_dir, steps, losses)
