"""The LLM Trainer's top level: from a job spec to trained, exported weights."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kubetune.contracts.progress import Phase, write_phase
from kubetune.contracts.run_dir import RunDir
from kubetune.errors import PREEMPTED_EXIT_CODE, ConfigError
from kubetune.spec.job import JobSpec, write_job_file
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer import loop
from kubetune.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from kubetune.trainer.data.batching import micro_batches, micro_batches_per_epoch
from kubetune.trainer.data.pipeline import prepare_data
from kubetune.trainer.distributed import (
    DistributedContext,
    close_distributed,
    init_distributed,
    is_sharded,
    unwrap_model,
    wrap_model,
)
from kubetune.trainer.evaluation.training import TrainingEvaluation
from kubetune.trainer.export import export_adapter, export_merged, reload_merged_qlora
from kubetune.trainer.kernels.compilation import compile_layers
from kubetune.trainer.kernels.lora_linear import fuse_lora_linears
from kubetune.trainer.kernels.packed_attention import use_packed_attention
from kubetune.trainer.methods import is_mergeable, method_support, trains_adapter
from kubetune.trainer.metrics import MetricsWriter, plot_losses, truncate_metrics
from kubetune.trainer.model_files import resolve_local
from kubetune.trainer.model_loading import (
    apply_method,
    check_environment,
    count_parameters,
    load_model,
    load_tokenizer,
    prepare_for_training,
)
from kubetune.trainer.objectives import build_objective, prepare_objective
from kubetune.trainer.optim import build_optimizer, build_scheduler
from kubetune.trainer.preemption import CheckpointSchedule, Preempted, StopRequest
from kubetune.trainer.sharded_export import export_adapter_sharded, export_merged_sharded
from kubetune.trainer.sharded_loading import load_sharded
from kubetune.trainer.speed_plan import device_info, model_shape, resolve_speed
from kubetune.trainer.status_report import reporter_from_environment


@dataclass
class TrainResult:
    """Where the outputs are and how training went."""

    output_dir: Path
    adapter_dir: Path | None
    merged_dir: Path | None
    steps: int
    losses: list[float] = field(default_factory=list)
    resumed_from: Path | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def say(ctx: DistributedContext, message: str) -> None:
    """Print a progress line from rank 0 only."""
    if ctx.is_main:
        print(message, flush=True)


def phase(ctx: DistributedContext, output_dir: Path, name: Phase, detail: str | None = None) -> None:
    """Record the phase for watchers (rank 0), once a backend has made the output folder: a run
    without one (``fine_tune``) has no watcher, and a rejected job must leave no output behind."""
    if ctx.is_main and output_dir.is_dir():
        write_phase(output_dir, name, detail)


def run_training(
    spec: JobSpec, run_dir: Path, config_file: Path | None = None, stop: StopRequest | None = None
) -> TrainResult:
    """Fine-tune as ``spec.trainer`` says, writing everything under ``run_dir/output``.

    Run under ``torchrun`` it trains with every process of the job (DDP or FSDP2). The
    environment, data and model are checked (QLoRA hardware, tokenizer, dataset columns, model
    files) before the first step, so user errors surface as
    :class:`~kubetune.errors.KubetuneError` before compute is spent.

    Args:
        spec: the job.
        run_dir: the run directory (``model/``, ``dataset/``, ``output/``).
        config_file: the file ``spec`` was read from. The spec is recorded in the run's
            ``output/config.yaml`` unless that is this file (the local backend writes it once,
            before launch).
        stop: a stop request the caller installed already (else one is installed here).

    SIGTERM or SIGUSR1 on any rank makes every rank checkpoint at the end of the current step
    and raise :class:`~kubetune.trainer.preemption.Preempted` (see :mod:`kubetune.trainer.preemption`).
    """
    config = spec.trainer
    if stop is None:
        stop = StopRequest()
        stop.install()
    check_environment(config)
    # Before CUDA's allocator starts: growable segments instead of fixed blocks waste less memory
    # to fragmentation when batch shapes vary (what the memory plan is calibrated with).
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    ctx = init_distributed()
    try:
        result = _train(spec, RunDir(run_dir), ctx, config_file, stop)
    except Preempted:
        # Every rank passed the barrier after the preemption checkpoint: the process group is left
        # as it is, because tearing it down while a peer is already exiting can abort the process
        # (gloo: "terminate called without an active exception") and lose the preempted status.
        raise
    except BaseException:
        close_distributed(ctx)
        raise
    close_distributed(ctx)
    return result


def _train(
    spec: JobSpec, layout: RunDir, ctx: DistributedContext, config_file: Path | None, stop: StopRequest
) -> TrainResult:
    config = spec.trainer
    output_dir = layout.output
    seed_everything(config.training.seed)

    model_path = resolve_local(config.model.path, layout.model, "trainer.model.path")
    dataset_path = resolve_local(config.dataset.path, layout.dataset, "trainer.dataset.path")
    phase(ctx, output_dir, Phase.LOADING_MODEL, "tokenizer")
    tokenizer = load_tokenizer(model_path, config.model)
    data = prepare_data(
        config.dataset,
        dataset_path,
        tokenizer,
        config.training.max_seq_len,
        config.training.seed,
        on_read=lambda rows: phase(ctx, output_dir, Phase.TOKENIZING, f"{rows} rows"),
    )
    say(
        ctx,
        f"dataset: {len(data.train)} train / {len(data.eval)} eval examples from {data.rows_read} rows "
        f"({data.truncated} truncated to {config.training.max_seq_len} tokens, "
        f"{data.dropped_without_targets} without targets dropped)",
    )
    evaluator = None
    if config.evaluation is not None:
        evaluator = TrainingEvaluation.prepare(config, tokenizer, data.label_names, spec.name or "model", ctx, layout)
        say(ctx, f"evaluation: {len(evaluator.eval_set.items)} rows of {evaluator.eval_set.file}")
    # Every ``auto`` speed setting is resolved here, once, and a plan that cannot fit stops the job
    # before the model is loaded.
    batches = _planned_batches(data.train, config.training, ctx.world_size)
    shape = model_shape(model_path, config.model, read_gguf=ctx.device.type == "cuda")
    speed = resolve_speed(config, device_info(ctx.device), ctx.world_size, shape, batches)
    config = config.model_copy(update={"training": speed.training})
    training = config.training
    say(ctx, f"speed: {speed.describe()}")

    strategy = training.distributed if ctx.world_size > 1 else "ddp"
    if evaluator is not None and strategy == "fsdp":
        raise ConfigError(
            "evaluation runs on training.distributed 'ddp' (generating with FSDP shards is not built yet)"
        )
    method = method_support(config)

    def apply_levers(inner: torch.nn.Module) -> None:
        if training.packing:
            use_packed_attention(inner)
        if training.fused_lora and method.lora_kernels:
            fuse_lora_linears(inner)
        if training.compile:
            # Compiled graphs land in the run directory, so a restart of the job (a new attempt of the
            # local supervisor, a new pod on the shared volume) reuses them instead of compiling again.
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(layout.compile_cache))
            compile_layers(inner)

    objective = build_objective(config)
    phase(ctx, output_dir, Phase.LOADING_MODEL, "weights")
    if ctx.world_size > 1 and strategy == "fsdp":
        if objective.name != "sft":
            raise ConfigError(
                f"objective {config.objective!r} runs on training.distributed 'ddp' (FSDP sharding of the "
                "preference objectives is not built yet)"
            )
        model = load_sharded(model_path, config, ctx, data.label_names, tokenizer.pad_token_id, apply_levers)
        trainable, total = count_parameters(model)  # DTensor shards count their global size
    else:
        quantize_on = ctx.device if method.quantized_base else None
        inner = load_model(
            model_path,
            config.model,
            training.precision,
            objective.head_labels or data.label_names,
            tokenizer.pad_token_id,
            quantize_on,
        )
        inner = prepare_for_training(inner, config)
        # Adapter initialisation draws random numbers: seed right before it so the initial weights
        # depend on the seed alone (not on what loading the model consumed).
        torch.manual_seed(training.seed)
        inner = apply_method(inner, config, model_path)
        if quantize_on is None:
            inner = inner.to(ctx.device)
        apply_levers(inner)
        trainable, total = count_parameters(inner)
        prepare_objective(objective, inner, config, data, tokenizer.pad_token_id, ctx, layout)
        model = wrap_model(
            loop.TrainingObjective(inner, training.chunked_loss, objective), ctx, strategy, training.precision
        )
    say(
        ctx,
        f"model: {model_path} | method {config.method} | trainable {trainable:,} of {total:,} parameters | "
        f"{ctx.world_size} process(es) on {ctx.device.type}" + (f" ({strategy})" if ctx.world_size > 1 else ""),
    )
    # Written once the data and model passed their checks: a rejected job leaves no output behind.
    recorded = config_file is not None and config_file.resolve() == layout.config_file.resolve()
    if ctx.is_main and not recorded:
        write_job_file(spec, layout.config_file)

    steps = loop.total_steps(len(data.train), training, ctx.world_size)
    optimizer = build_optimizer(model, training)
    scheduler = build_scheduler(optimizer, training, steps)
    stream = loop.MicroBatchStream(data.train, training, rank=ctx.rank, world_size=ctx.world_size)

    checkpoints = layout.checkpoints
    global_micro_batch = training.batch_size * ctx.world_size
    start_step = 0
    resumed_from = latest_checkpoint(checkpoints) if training.resume == "auto" else None
    if resumed_from is not None:
        point = load_checkpoint(resumed_from, model, optimizer, scheduler, ctx, global_micro_batch)
        start_step, stream.position = point.step, point.position
        say(ctx, f"resumed from {resumed_from} (step {start_step} of {steps})")
    metrics_path = layout.metrics_file
    if ctx.is_main:
        truncate_metrics(metrics_path, start_step)
    reporter = reporter_from_environment() if ctx.is_main else None
    metrics = MetricsWriter(
        metrics_path, steps, enabled=ctx.is_main, start_step=start_step, reporters=(reporter,) if reporter else ()
    )

    schedule = CheckpointSchedule(training, steps, stop, ctx)
    preempted: list[Preempted] = []

    def step_end(step: int) -> loop.StepEnd | None:
        end = checkpoint(step)
        if evaluator is not None and not preempted and evaluator.due(step, steps):
            phase(ctx, output_dir, Phase.EVALUATING, f"{len(evaluator.eval_set.items)} rows")
            evaluator.run(model, step, metrics)
            phase(ctx, output_dir, Phase.TRAINING)
        return end

    def checkpoint(step: int) -> loop.StepEnd | None:
        boundary = schedule.at_step_end(step)
        if not boundary.checkpoint:
            return None
        started = time.perf_counter()
        path = save_checkpoint(
            checkpoints,
            step,
            model,
            optimizer,
            scheduler,
            stream.position,
            ctx,
            training.keep_checkpoints,
            global_micro_batch,
        )
        seconds = time.perf_counter() - started
        say(ctx, f"checkpoint: {path} ({seconds:.1f} s)")
        metrics.annotate(step, checkpoint_s=round(seconds, 3))
        if schedule.after_checkpoint() or boundary.stop:
            preempted.append(Preempted(step, path, seconds))
        return loop.StepEnd(stop=bool(preempted))

    phase(ctx, output_dir, Phase.COMPILING if training.compile else Phase.TRAINING)
    losses = loop.run_loop(
        model,
        stream,
        optimizer,
        scheduler,
        training,
        steps,
        tokenizer.pad_token_id,
        ctx.device,
        metrics,
        start_step=start_step,
        eval_examples=data.eval,
        on_step_end=step_end,
    )
    if preempted:
        say(ctx, f"{preempted[0]}; exiting with status {PREEMPTED_EXIT_CODE} (resumable)")
        raise preempted[0]
    if evaluator is not None and not evaluator.done_at(steps):
        phase(ctx, output_dir, Phase.EVALUATING, f"{len(evaluator.eval_set.items)} rows")
        evaluator.run(model, steps, metrics)
    phase(ctx, output_dir, Phase.EXPORTING)
    adapter_dir, merged_dir = _export(model, tokenizer, layout, ctx, config, model_path)
    if ctx.is_main:
        plot_losses(metrics_path, layout.loss_curve)
    ctx.barrier()
    return TrainResult(layout.output, adapter_dir, merged_dir, steps, losses, resumed_from)


#: Beyond this many example draws (examples x epochs x ranks) the memory plan assumes the worst
#: shuffle instead of listing every micro-batch.
PLANNED_DRAWS = 2_000_000


def _planned_batches(examples, training, world_size: int) -> list[list[int]]:
    """Token counts of every micro-batch any rank will run (the seeded shuffle is known in advance).

    Long runs (more than :data:`PLANNED_DRAWS` example draws) are planned for the worst shuffle:
    the ``batch_size`` longest examples together.
    """
    per_epoch = micro_batches_per_epoch(len(examples), training.batch_size, world_size)
    needed = loop.total_steps(len(examples), training, world_size) * training.gradient_accumulation_steps
    epochs = -(-needed // max(1, per_epoch))
    if len(examples) * epochs * world_size > PLANNED_DRAWS:
        return [sorted((len(example.input_ids) for example in examples), reverse=True)[: training.batch_size]]
    return [
        [len(example.input_ids) for example in batch]
        for epoch in range(epochs)
        for rank in range(world_size)
        for batch in micro_batches(examples, training.batch_size, epoch, training.seed, rank, world_size)
    ]


def _export(model, tokenizer, layout: RunDir, ctx: DistributedContext, config: LLMConfig, model_path: Path):
    """Write ``adapter/`` and ``merged/`` (from rank 0; a sharded model is gathered unit by unit)."""
    root = model
    model = unwrap_model(model)
    model.eval()
    is_peft = trains_adapter(config)
    quantized = method_support(config).quantized_base
    want_adapter = is_peft and (config.output.save_adapter or quantized)
    skip_merge = config.output.save_merged and is_peft and not is_mergeable(config)
    if skip_merge:
        say(
            ctx,
            f"export: merged/ skipped: a {config.method!r} adapter cannot be folded into the base weights; "
            "load adapter/ with peft.AutoPeftModel instead",
        )
    adapter_dir = merged_dir = None
    if is_sharded(root):
        if want_adapter:
            adapter_dir = export_adapter_sharded(model, tokenizer, layout.adapter, ctx)
        if config.output.save_merged and not skip_merge:
            merged_dir = export_merged_sharded(model, root, tokenizer, layout.merged, ctx, is_peft)
    elif ctx.is_main:
        if want_adapter:
            adapter_dir = export_adapter(model, tokenizer, layout.adapter)
        if config.output.save_merged and not skip_merge:
            if quantized:
                model = reload_merged_qlora(
                    lambda: load_model(model_path, config.model, config.training.precision), adapter_dir
                )
            merged_dir = export_merged(model, tokenizer, layout.merged, is_peft)
    say(ctx, f"export: {', '.join(str(p) for p in (adapter_dir, merged_dir) if p) or 'nothing requested'}")
    return adapter_dir, merged_dir
