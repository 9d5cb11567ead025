"""Resolve the ``auto`` speed settings once, from the model, method, data and device (no torch).

Every speed setting of :class:`~kubetune.spec.trainer.TrainingConfig` defaults to ``auto``:

- ``precision``: bf16 on a CUDA GPU that supports it, else fp32.
- ``packing``: on for causal-LM fine-tunes of the model's own tokens (full, LoRA family) when
  per-example causal attention over a packed row is exactly the model's attention (no
  soft-capping, no sliding window shorter than ``max_seq_len``, no other attention implementation
  asked for).
- ``chunked_loss``: on for causal-LM fine-tunes without virtual tokens.
- ``fused_lora``: on for LoRA and QLoRA without adapter dropout.
- ``compile``: each decoder layer compiled.
- ``gradient_checkpointing``: the smallest share of recomputed layers whose memory plan fits
  the GPU with :data:`~kubetune.planning.memory.SAFETY_MARGIN` to spare.
- ``distributed``: DDP when a replica fits one GPU, else FSDP2.

On CPU ``auto`` is today's exact path: fp32, every lever off. Jobs of several processes keep
the levers not yet proven under DDP/FSDP (:data:`MULTI_PROCESS_LEVERS`) off and say so. An
explicit value always wins; one that cannot work is a :class:`~kubetune.errors.ConfigError`
naming the setting. A plan that does not fit the GPU is refused before the model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from kubetune.errors import ConfigError
from kubetune.planning import GIB, MemoryPlan, ModelShape, PlanSetup, advice, choose_checkpointing, plan_memory
from kubetune.planning.memory import choose_strategy
from kubetune.spec.trainer import FSDP_METHODS, LLMConfig, LoraConfig, ModelConfig, TrainingConfig
from kubetune.trainer.methods import method_support
from kubetune.trainer.model_files import pretrained_location

#: Levers ``auto`` keeps off for jobs of several processes until they pass the DDP/FSDP matrix
#: (packing, the chunked loss and fused LoRA do: ``tests/trainer/test_distributed_levers.py``).
MULTI_PROCESS_LEVERS = ("compile",)
#: Methods that train on the model's own tokens (no virtual tokens), where packing and the chunked loss apply.
TOKEN_METHODS = ("full", "lora", "qlora", "dora")
_LABELS = {"packing": "packing", "chunked_loss": "chunked loss", "fused_lora": "fused LoRA", "compile": "compile"}


@dataclass(frozen=True)
class DeviceInfo:
    """What the resolution needs to know about the device a process trains on.

    Attributes:
        type: ``cuda`` or ``cpu``.
        bf16: the device computes in bf16 (CUDA compute capability 8.0 or newer).
        memory_bytes: total memory of one GPU (None on CPU).
        name: device name, for the log line.
    """

    type: str
    bf16: bool = False
    memory_bytes: float | None = None
    name: str = ""

    @property
    def is_cuda(self) -> bool:
        """Whether this is a CUDA GPU."""
        return self.type == "cuda"


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved training settings, the memory plan behind them, and the levers held back.

    Attributes:
        training: the training config with every ``auto`` replaced by a value.
        plan: the memory plan (None on CPU, or without the model's sizes).
        held_back: levers ``auto`` kept off because the job has several processes.
        world_size: processes of the job.
    """

    training: TrainingConfig
    plan: MemoryPlan | None
    held_back: tuple[str, ...] = ()
    world_size: int = 1

    def describe(self) -> str:
        """The one log line: ``precision bf16, packing on, ..., checkpointing 0.25 of layers: plan fits 61 of 79 GiB``.

        ``auto`` choices and explicit values read the same; held-back levers are named at the end.
        """
        t = self.training
        parts = [f"precision {t.precision}"]
        parts += [f"{_LABELS[name]} {'on' if getattr(t, name) else 'off'}" for name in ("packing", "chunked_loss")]
        parts.append(f"fused LoRA {'on' if t.fused_lora else 'off'}")
        parts.append("compile per layer" if t.compile else "compile off")
        if not t.gradient_checkpointing:
            parts.append("checkpointing off")
        elif t.gradient_checkpointing_fraction >= 1:
            parts.append("checkpointing all layers")
        else:
            parts.append(f"checkpointing {t.gradient_checkpointing_fraction:.2f} of layers")
        if self.world_size > 1:
            parts.append(f"{t.distributed} over {self.world_size} processes")
        line = ", ".join(parts)
        if self.plan is not None:
            line += f": {self.plan.summary()}"
        if self.held_back:
            names = ", ".join(_LABELS[name] for name in self.held_back)
            line += f" ({names} kept off: not yet proven with {self.world_size} processes under {t.distributed})"
        return line


def _check_packing(config: LLMConfig, shape: ModelShape | None) -> str | None:
    """Why packing cannot be exact for this job, or None when it can."""
    attn = config.model.attn_implementation
    if attn not in (None, "sdpa"):
        return f"model.attn_implementation {attn!r} is replaced by kubetune's packed attention"
    if shape is not None and not shape.attention_is_plain_causal(config.training.max_seq_len):
        window = f"uses a {shape.sliding_window}-token sliding window"
        why = "soft-caps attention logits" if shape.softcapping else window
        return (
            f"{shape.model_type or 'the model'} {why}; packed attention is plain causal attention "
            "and would not match it"
        )
    return None


def largest_micro_batch(batches: list[list[int]], packed: bool) -> int:
    """Tokens of the largest of ``batches`` (each the token counts of its examples).

    Packed rows hold their examples' tokens; padded batches pad every row to the longest.
    """
    return max(sum(batch) if packed else len(batch) * max(batch) for batch in batches if batch)


def _planned_targets(target_modules) -> tuple[str, ...] | str:
    """The linears the plan counts adapters on: the names given, else every linear (PEFT's default set
    for the architecture is at most that)."""
    if target_modules is None or isinstance(target_modules, str):
        return "all-linear"
    return tuple(target_modules)


def resolve_speed(
    config: LLMConfig,
    device: DeviceInfo,
    world_size: int = 1,
    shape: ModelShape | None = None,
    batches: list[list[int]] | None = None,
) -> SpeedPlan:
    """Resolve every ``auto`` speed setting of ``config`` for ``device`` and plan the memory.

    Args:
        config: the job's LLM config (explicit values are kept).
        device: the device each process trains on.
        world_size: processes of the job.
        shape: the model's sizes (None: no memory plan; checkpointing ``auto`` is then off).
        batches: the micro-batches the job will run, as token counts of their examples, to
            plan the largest one (default: ``batch_size`` examples of ``max_seq_len`` tokens).

    Raises:
        ConfigError: an explicit setting that cannot work here (naming it), or a memory plan
            that does not fit the GPU (saying by how much and what to change).
    """
    t = config.training
    cuda = device.is_cuda
    causal = config.model.task == "causal-lm"
    token_method = config.method in TOKEN_METHODS
    multi = world_size > 1
    lora_kernels = method_support(config).lora_kernels
    # LoRA-family settings (the defaults for methods without a lora section: planned like LoRA).
    lora = getattr(config.method_config, "lora", None) or LoraConfig()
    held: list[str] = []

    def lever(name: str, applies: bool) -> bool:
        value = getattr(t, name)
        if value != "auto":
            return bool(value)
        if not (cuda and applies):
            return False
        if multi and name in MULTI_PROCESS_LEVERS:
            held.append(name)
            return False
        return True

    precision = t.precision if t.precision != "auto" else ("bf16" if cuda and device.bf16 else "fp32")
    packing_problem = _check_packing(config, shape) if causal and token_method else "not a causal-LM token method"
    if t.packing is True and packing_problem is not None and causal and token_method:
        raise ConfigError(f"training.packing: {packing_problem}; set packing: false (or leave it auto)")
    packing = lever("packing", packing_problem is None)
    chunked = lever("chunked_loss", causal and token_method)
    fused = lever("fused_lora", lora_kernels and lora.dropout == 0)
    compiled = lever("compile", config.method not in ("prefix", "prompt"))

    strategy = t.distributed
    setup = PlanSetup(
        method=config.method,
        precision=precision,
        tokens=largest_micro_batch(batches, packing) if batches else t.batch_size * t.max_seq_len,
        world_size=world_size,
        strategy="ddp" if strategy == "auto" else strategy,
        compiled=compiled,
        fused_lora=fused and lora_kernels,
        chunked_loss=chunked,
        causal_lm=causal,
        lora_rank=lora.r,
        lora_targets=_planned_targets(lora.target_modules),
    )
    can_plan = cuda and shape is not None and device.memory_bytes is not None
    if strategy == "auto":
        strategy = choose_strategy(shape, setup, device.memory_bytes) if can_plan and multi else "ddp"
        if config.method not in FSDP_METHODS or config.objective_config.sharding_problem(config.method == "full"):
            strategy = "ddp"  # the plan below then says whether a replica fits
        setup = replace(setup, strategy=strategy)

    plan = None
    checkpointing = t.gradient_checkpointing
    fraction = t.gradient_checkpointing_fraction
    if checkpointing == "auto":
        if can_plan:
            plan = choose_checkpointing(shape, setup, device.memory_bytes)
            checkpointing = plan.checkpointed_layers > 0
            fraction = plan.setup.checkpoint_share if checkpointing else 1.0
        else:
            checkpointing = False
    elif can_plan:
        share = fraction if checkpointing else 0.0
        plan = plan_memory(shape, replace(setup, checkpoint_share=share), device.memory_bytes)
    if plan is not None and plan.peak > plan.device_bytes:
        over = (plan.peak - plan.device_bytes) / GIB
        raise ConfigError(
            f"memory plan: {config.method} needs {plan.peak / GIB:.1f} GiB per GPU, {over:.1f} GiB more than the "
            f"{plan.device_bytes / GIB:.0f} GiB of {device.name or 'the GPU'}; try {advice(plan)}"
        )
    training = t.model_copy(
        update={
            "precision": precision,
            "packing": packing,
            "chunked_loss": chunked,
            "fused_lora": fused,
            "compile": compiled,
            "gradient_checkpointing": bool(checkpointing),
            "gradient_checkpointing_fraction": fraction,
            "distributed": strategy,
        }
    )
    return SpeedPlan(training, plan, tuple(held), world_size)


def device_info(device) -> DeviceInfo:
    """Describe a ``torch.device`` (torch is imported here only, so this module stays torch-free)."""
    if device.type != "cuda":
        return DeviceInfo(device.type)
    import torch

    props = torch.cuda.get_device_properties(device)
    return DeviceInfo("cuda", bool(torch.cuda.is_bf16_supported()), float(props.total_memory), props.name)


def model_shape(path: Path, model: ModelConfig, read_gguf: bool = True) -> ModelShape | None:
    """The model's sizes from its ``config.json`` (a GGUF file: the config transformers reads from it).

    None when they cannot be read (an architecture without the sizes the planner knows, or a
    GGUF file with ``read_gguf`` off): the job then runs without a memory plan.
    """
    location, extra = pretrained_location(path)
    try:
        if not extra:
            return ModelShape.from_model_dir(location)
        if not read_gguf:
            return None
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(location, trust_remote_code=model.trust_remote_code, **extra)
        return ModelShape.from_config(config.to_dict(), str(path))
    except (ConfigError, OSError, ValueError):
        return None
