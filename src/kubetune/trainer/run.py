"""The LLM Trainer's top level: from a job spec to trained, exported weights."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kubetune.contracts.progress import Phase, write_phase
from kubetune.contracts.run_dir import RunDir
from kubetune.errors import PREEMPTED_EXIT_CODE, ConfigError
from kubetune.exporter.preflight import check_push_target
from kubetune.spec.job import JobSpec, write_job_file
from kubetune.spec.trainer import LLMConfig
from kubetune.tracking import TrackingSession
from kubetune.trainer import loop
from kubetune.trainer.build import build_model
from kubetune.trainer.checkpoint import StepCheckpointer, latest_checkpoint, load_checkpoint
from kubetune.trainer.data.batching import micro_batches, micro_batches_per_epoch
from kubetune.trainer.data.pipeline import prepare_data
from kubetune.trainer.distributed import DistributedContext, close_distributed, init_distributed
from kubetune.trainer.evaluation.training import TrainingEvaluation
from kubetune.trainer.exporting import export_outputs
from kubetune.trainer.metrics import MetricsWriter, plot_losses, read_metrics, truncate_metrics
from kubetune.trainer.model_files import resolve_local
from kubetune.trainer.model_loading import check_environment, load_tokenizer
from kubetune.trainer.objectives import build_objective
from kubetune.trainer.optim import build_optimizer, build_scheduler
from kubetune.trainer.preemption import CheckpointSchedule, Preempted, StopRequest
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
    """The run as its units: seed, data, evaluation set, plan, objective, model, loop with
    checkpoints (and evaluations), export."""
    config = spec.trainer
    output_dir = layout.output
    seed_everything(config.training.seed)
    if ctx.is_main:  # before hours of training: credentials, an empty prefix (submit checked it too, locally)
        check_push_target(config, layout)

    model_path = resolve_local(config.model.path, layout.model, "trainer.model.path")
    dataset_path = resolve_local(config.dataset.path, layout.dataset, "trainer.dataset.path")
    phase(ctx, output_dir, Phase.LOADING_MODEL, "tokenizer")
    tokenizer = load_tokenizer(model_path, config.model)
    data = build_data(config, dataset_path, tokenizer, ctx, output_dir)
    evaluator = None
    if config.evaluation is not None:
        evaluator = TrainingEvaluation.prepare(config, tokenizer, data.label_names, spec.name or "model", ctx, layout)
        say(ctx, f"evaluation: {len(evaluator.eval_set.items)} rows of {evaluator.eval_set.file}")
    config = plan_speed(config, data, model_path, ctx)
    # Before the model loads: with strict_tracking an unreachable tracker fails the job here.
    tracking = _start_tracking(spec.model_copy(update={"trainer": config}), layout) if ctx.is_main else None
    try:
        return _train_tracked(
            spec, layout, ctx, config_file, stop, config, data, model_path, tokenizer, evaluator, tracking
        )
    except Preempted:
        if tracking is not None:
            tracking.finish(None)  # the resumed job continues the same runs
        raise
    except BaseException:
        if tracking is not None:
            tracking.finish("FAILED", wait_s=10.0)
        raise


def _start_tracking(resolved: JobSpec, layout: RunDir) -> TrackingSession | None:
    """The job's trackers (``trainer.report_to``), their runs started with the resolved config; None: no tracker."""
    session = TrackingSession(resolved, layout)
    if not session.trackers:
        return None
    session.start()
    return session


def _train_tracked(
    spec: JobSpec,
    layout: RunDir,
    ctx: DistributedContext,
    config_file: Path | None,
    stop: StopRequest,
    config: LLMConfig,
    data,
    model_path: Path,
    tokenizer,
    evaluator: TrainingEvaluation | None,
    tracking: TrackingSession | None,
) -> TrainResult:
    """Load the model, train, checkpoint and export (everything after the data and the speed plan)."""
    output_dir = layout.output
    training = config.training

    strategy = training.distributed if ctx.world_size > 1 else "ddp"
    if evaluator is not None and strategy == "fsdp":
        raise ConfigError(
            "evaluation runs on training.distributed 'ddp' (generating with FSDP shards is not built yet)"
        )

    objective = build_objective(config)
    phase(ctx, output_dir, Phase.LOADING_MODEL, "weights")
    built = build_model(config, model_path, objective, data, tokenizer.pad_token_id, ctx, layout, strategy)
    model = built.model
    say(
        ctx,
        f"model: {model_path} | method {config.method} | trainable {built.trainable:,} of {built.total:,} parameters | "
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

    global_micro_batch = training.batch_size * ctx.world_size
    start_step = 0
    resumed_from = latest_checkpoint(layout.checkpoints) if training.resume == "auto" else None
    if resumed_from is not None:
        point = load_checkpoint(resumed_from, model, optimizer, scheduler, ctx, global_micro_batch)
        start_step, stream.position = point.step, point.position
        say(ctx, f"resumed from {resumed_from} (step {start_step} of {steps})")
    metrics_path = layout.metrics_file
    if ctx.is_main:
        truncate_metrics(metrics_path, start_step)
    reporter = reporter_from_environment() if ctx.is_main else None
    reporters = tuple(report for report in (reporter, tracking and tracking.report) if report is not None)
    metrics = MetricsWriter(metrics_path, steps, enabled=ctx.is_main, start_step=start_step, reporters=reporters)
    checkpointer = StepCheckpointer(
        layout.checkpoints,
        CheckpointSchedule(training, steps, stop, ctx),
        model,
        optimizer,
        scheduler,
        stream,
        ctx,
        training.keep_checkpoints,
        global_micro_batch,
        metrics,
        lambda line: say(ctx, line),
    )

    def step_end(step: int) -> loop.StepEnd | None:
        end = checkpointer(step)
        if evaluator is not None and checkpointer.preempted is None and evaluator.due(step, steps):
            phase(ctx, output_dir, Phase.EVALUATING, f"{len(evaluator.eval_set.items)} rows")
            evaluator.run(model, step, metrics)
            phase(ctx, output_dir, Phase.TRAINING)
        return end

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
    if checkpointer.preempted is not None:
        say(ctx, f"{checkpointer.preempted}; exiting with status {PREEMPTED_EXIT_CODE} (resumable)")
        raise checkpointer.preempted
    if evaluator is not None and not evaluator.done_at(steps):
        phase(ctx, output_dir, Phase.EVALUATING, f"{len(evaluator.eval_set.items)} rows")
        evaluator.run(model, steps, metrics)
    phase(ctx, output_dir, Phase.EXPORTING)
    adapter_dir, merged_dir = export_outputs(
        model, tokenizer, layout, ctx, config, model_path, lambda line: say(ctx, line)
    )
    if ctx.is_main:
        plot_losses(metrics_path, layout.loss_curve)
    if tracking is not None:
        tracking.catch_up([record.to_json() for record in read_metrics(metrics_path)])
        artifacts = [(layout.loss_curve, layout.loss_curve.name)]
        if config.tracking.log_adapter and adapter_dir is not None:
            artifacts.append((adapter_dir, "adapter"))
        tracking.finish("FINISHED", artifacts)
    ctx.barrier()
    return TrainResult(layout.output, adapter_dir, merged_dir, steps, losses, resumed_from)


def build_data(config: LLMConfig, dataset_path: Path, tokenizer, ctx: DistributedContext, output_dir: Path):
    """The data unit: read, format and tokenize the dataset
    (:func:`~kubetune.trainer.data.pipeline.prepare_data`), reporting what was kept."""
    data = prepare_data(
        config.dataset,
        dataset_path,
        tokenizer,
        config.training.max_seq_len,
        config.training.seed,
        on_read=lambda rows: phase(ctx, output_dir, Phase.TOKENIZING, f"{rows} rows"),
        # KTO pairs each row with another's completion within blocks of one global micro-batch.
        batch_size=config.training.batch_size * ctx.world_size,
    )
    say(
        ctx,
        f"dataset: {len(data.train)} train / {len(data.eval)} eval examples from {data.rows_read} rows "
        f"({data.truncated} truncated to {config.training.max_seq_len} tokens, "
        f"{data.dropped_without_targets} without targets dropped)",
    )
    return data


def plan_speed(config: LLMConfig, data, model_path: Path, ctx: DistributedContext) -> LLMConfig:
    """``config`` with every ``auto`` speed setting resolved, once; a plan that cannot fit
    stops the job (ConfigError) before the model is loaded."""
    batches = _planned_batches(data.train, config.training, ctx.world_size)
    shape = model_shape(model_path, config.model, read_gguf=ctx.device.type == "cuda")
    speed = resolve_speed(config, device_info(ctx.device), ctx.world_size, shape, batches)
    say(ctx, f"speed: {speed.describe()}")
    return config.model_copy(update={"training": speed.training})


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
