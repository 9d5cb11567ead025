"""Peak GPU memory per process of a fine-tune, estimated from the model's ``config.json`` alone.

No torch: ``kubetune validate``, the backends and the catalog tests plan a job before anything
is loaded, and the trainer uses the same numbers to pick the checkpointing share and the
distributed strategy. The estimate is a sum of named components (:class:`MemoryPlan`):

- ``weights``: the frozen or trained model weights (NF4 plus fp32 embeddings, head and norms
  for QLoRA, as PEFT's k-bit preparation leaves them).
- ``adapters``: the trainable adapter weights (fp32 master copies).
- ``gradients`` and ``optimizer``: AdamW keeps two moments per trainable parameter, in the
  parameter's dtype.
- ``activations``: what autograd keeps per token and decoder layer (inputs of every matmul,
  attention outputs, the MLP's gate/up products), in the compute dtype; a checkpointed layer
  keeps only its input, and one layer is recomputed at a time.
- ``logits``: the LM head and loss: the whole ``tokens x vocab`` logits and their fp32 copies
  for the plain loss; one chunk of rows for the chunked loss.
- ``distributed``: DDP's gradient buckets, FSDP2's gathered layers.

The per-token activation sizes were fitted on the measured peaks of the H100 benchmark
(``benchmarks/README.md``); ``benchmarks/defaults.py`` compares the estimate with the measured
peak of every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubetune.errors import ConfigError

GIB = 2**30
#: Bytes of one element per precision name.
DTYPE_BYTES = {"fp32": 4, "bf16": 2}
#: NF4 weight plus double-quantized absmax (blocks of 64, fp32 second-level scale per 256 blocks).
NF4_BYTES = 0.5 + (8 + 32 / 256) / 64 / 8
#: Share of device memory kept free for the CUDA context, allocator fragmentation and the estimate's error.
SAFETY_MARGIN = 0.10
#: Saved activations beyond the tensors named in :meth:`ModelShape.saved_elements_per_token`
#: (softmax statistics, RoPE tables, allocator rounding), fitted on the H100 peaks.
ACTIVATION_SLACK = 1.08
#: Rows per chunk of the chunked loss aim at about this many logits (kernels/chunked_cross_entropy.py).
CHUNK_LOGITS = 2**30
#: Linear layers a LoRA ``all-linear`` adapter wraps in a Llama-style decoder layer.
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Adapter methods: a frozen base with small trainable weights.
ADAPTER_METHODS = ("lora", "qlora", "dora", "prefix", "prompt", "peft")


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that memory depends on (read from ``config.json``).

    Attributes:
        model_type: ``config.json``'s ``model_type`` (llama, qwen2, gemma2, ...).
        layers: decoder layers.
        hidden: hidden size ``d``.
        intermediate: MLP inner size ``f`` (gated MLP: gate, up and down projections).
        heads: attention (query) heads.
        kv_heads: key/value heads (grouped-query attention).
        head_dim: size of one head.
        vocab: vocabulary size.
        tied: the LM head shares the input embedding's weight.
        sliding_window: attention window of the layers that use one (None: full causal attention).
        softcapping: attention logits are soft-capped (Gemma 2).
    """

    model_type: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    sliding_window: int | None = None
    softcapping: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "config.json") -> ModelShape:
        """Read the shape from a ``config.json`` mapping (multimodal configs: their ``text_config``).

        Raises:
            ConfigError: a size the planner needs is missing (naming the key and ``source``).
        """
        if "text_config" in config and "num_hidden_layers" not in config:
            config = {**config["text_config"], "model_type": config.get("model_type", "")}

        def size(*keys: str) -> int:
            for key in keys:
                if isinstance(config.get(key), int) and config[key] > 0:
                    return config[key]
            raise ConfigError(f"{source}: no {keys[0]!r} (the memory planner needs the model's sizes)")

        hidden = size("hidden_size", "n_embd", "d_model")
        heads = size("num_attention_heads", "n_head")
        kv_heads = config.get("num_key_value_heads") or heads
        head_dim = config.get("head_dim") or hidden // heads
        windowed = config.get("use_sliding_window", True) is not False and (
            "sliding_attention" in (config.get("layer_types") or ["sliding_attention"])
        )
        window = config.get("sliding_window") if windowed else None
        return cls(
            model_type=str(config.get("model_type", "")),
            layers=size("num_hidden_layers", "n_layer"),
            hidden=hidden,
            intermediate=size("intermediate_size", "n_inner", "ffn_dim"),
            heads=heads,
            kv_heads=int(kv_heads),
            head_dim=int(head_dim),
            vocab=size("vocab_size"),
            tied=bool(config.get("tie_word_embeddings", True)),
            sliding_window=int(window) if isinstance(window, int) and window > 0 else None,
            softcapping=bool(config.get("attn_logit_softcapping")),
        )

    @classmethod
    def from_model_dir(cls, path: str | Path) -> ModelShape:
        """Read ``<path>/config.json``.

        Raises:
            ConfigError: the file is missing, not JSON, or lacks a size.
        """
        file = Path(path) / "config.json"
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(f"{file}: not a readable config.json (the memory planner needs it)") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{file}: not a JSON object")
        return cls.from_config(config, str(file))

    @property
    def q_dim(self) -> int:
        """Width of the query projection's output (heads x head size)."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the key (and of the value) projection's output."""
        return self.kv_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """Every linear of one decoder layer: ``name -> (in features, out features)``."""
        d, f = self.hidden, self.intermediate
        return {
            "q_proj": (d, self.q_dim),
            "k_proj": (d, self.kv_dim),
            "v_proj": (d, self.kv_dim),
            "o_proj": (self.q_dim, d),
            "gate_proj": (d, f),
            "up_proj": (d, f),
            "down_proj": (f, d),
        }

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer (its linears and two norms)."""
        return sum(i * o for i, o in self.linears().values()) + 2 * self.hidden

    @property
    def embedding_params(self) -> int:
        """Input embedding, plus the LM head when it is not tied."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        """All parameters of the model."""
        return self.layers * self.layer_params + self.embedding_params + self.hidden

    def saved_elements_per_token(self) -> int:
        """Tensors autograd keeps per token in one decoder layer (no checkpointing, compiled layer).

        Both norms' inputs and outputs (4d), query and key after RoPE plus the value (q + 2kv),
        the attention output (q), and the MLP's gate, up and gated product (3f).
        """
        return 4 * self.hidden + 2 * self.q_dim + 2 * self.kv_dim + 3 * self.intermediate

    def attention_is_plain_causal(self, max_seq_len: int) -> bool:
        """Whether per-example causal attention over packed rows equals the model's own attention.

        Soft-capped attention logits, or a sliding window shorter than the longest sequence,
        are not what the packed (varlen) attention computes.
        """
        return not self.softcapping and (self.sliding_window is None or self.sliding_window >= max_seq_len)


@dataclass(frozen=True)
class PlanSetup:
    """Everything besides the model that memory depends on, with every setting resolved (no ``auto``).

    Attributes:
        method: full, lora, qlora, dora, prefix, prompt or peft.
        precision: ``bf16`` or ``fp32`` (weights and compute).
        tokens: tokens of the largest micro-batch a process runs (padded or packed).
        checkpoint_share: share of decoder layers recomputed in backward (0 = none).
        world_size: processes of the job.
        strategy: ``ddp`` or ``fsdp`` (ignored for one process).
        compiled: decoder layers run under ``torch.compile``.
        fused_lora: LoRA adapters run in the base matmul's epilogue.
        chunked_loss: LM head and loss in row chunks.
        causal_lm: the task is language modelling (else classification: a tiny head).
        lora_rank: adapter rank (LoRA family).
        lora_targets: the linears adapters wrap (``all-linear`` or names).
    """

    method: str
    precision: str
    tokens: int
    checkpoint_share: float = 0.0
    world_size: int = 1
    strategy: str = "ddp"
    compiled: bool = False
    fused_lora: bool = False
    chunked_loss: bool = False
    causal_lm: bool = True
    lora_rank: int = 16
    lora_targets: tuple[str, ...] | str = "all-linear"


@dataclass(frozen=True)
class MemoryPlan:
    """Estimated peak GPU memory of one process, by component (bytes), and the device it must fit.

    ``peak`` is not the plain sum: a full fine-tune's gradients appear while the backward frees
    activations, so the peak holds the larger of the two.
    """

    setup: PlanSetup
    components: dict[str, float]
    peak: float
    checkpointed_layers: int
    layers: int
    device_bytes: float | None = None

    @property
    def budget(self) -> float | None:
        """Device memory a plan may use: the device less :data:`SAFETY_MARGIN`."""
        return None if self.device_bytes is None else self.device_bytes * (1 - SAFETY_MARGIN)

    @property
    def fits(self) -> bool:
        """Whether the peak stays within the budget (True when no device size is known)."""
        return self.budget is None or self.peak <= self.budget

    def summary(self) -> str:
        """``plan fits 61 of 79 GiB`` / ``plan needs 95 GiB, 24 over the 71 GiB budget of 79 GiB``."""
        if self.device_bytes is None:
            return f"plan needs {self.peak / GIB:.0f} GiB"
        if self.fits:
            return f"plan fits {self.peak / GIB:.0f} of {self.device_bytes / GIB:.0f} GiB"
        over = (self.peak - self.budget) / GIB
        return (
            f"plan needs {self.peak / GIB:.1f} GiB per GPU, {over:.1f} GiB over the "
            f"{self.budget / GIB:.1f} GiB budget of a {self.device_bytes / GIB:.0f} GiB GPU"
        )

    def breakdown(self) -> str:
        """One line per component, then the peak."""
        lines = [f"  {name:12} {value / GIB:8.2f} GiB" for name, value in self.components.items() if value]
        lines.append(f"  {'peak':12} {self.peak / GIB:8.2f} GiB")
        return "\n".join(lines)


def checkpointed_layer_count(share: float, layers: int) -> int:
    """How many of ``layers`` an evenly spread ``share`` recomputes (the rule of ``kernels/checkpointing.py``)."""
    if share <= 0:
        return 0
    return sum(int((i + 1) * share) > int(i * share) for i in range(layers))


def _adapter_params(shape: ModelShape, setup: PlanSetup) -> int:
    """Trainable parameters of the adapter."""
    if setup.method in ("lora", "qlora", "dora", "peft"):
        return shape.layers * sum(
            setup.lora_rank * (i + o) + (o if setup.method == "dora" else 0)
            for _, (i, o) in _targeted(shape, setup).items()
        )
    if setup.method in ("prefix", "prompt"):
        return 20 * shape.hidden * (2 * shape.layers if setup.method == "prefix" else 1)
    return 0


def _targeted(shape: ModelShape, setup: PlanSetup) -> dict[str, tuple[int, int]]:
    linears = shape.linears()
    if setup.lora_targets == "all-linear":
        return linears
    chosen = {name: dims for name, dims in linears.items() if name in setup.lora_targets}
    return chosen or linears  # unknown module names (fused projections): plan as all-linear


def _activation_bytes_per_token(shape: ModelShape, setup: PlanSetup, checkpointed: bool) -> float:
    """Bytes one decoder layer keeps per token for the backward."""
    compute = DTYPE_BYTES[setup.precision]
    # QLoRA: PEFT's k-bit preparation keeps the residual stream in fp32.
    residual = 4 if setup.method == "qlora" else compute
    if checkpointed:
        return residual * shape.hidden
    saved = compute * shape.saved_elements_per_token() * ACTIVATION_SLACK
    if setup.method == "qlora":
        saved += (residual - compute) * 2 * shape.hidden
    if not setup.compiled:
        # Eager norms keep their fp32 upcast input.
        saved += 2 * 4 * shape.hidden
        if setup.method == "qlora":
            # fp32 norm outputs, and autocast's compute-dtype copy of them for each of q, k, v, gate, up.
            saved += 2 * (4 - compute) * shape.hidden + 5 * compute * shape.hidden
        lora_like = setup.method in ("lora", "qlora", "dora", "peft")
        if lora_like and setup.precision == "bf16" and (not setup.fused_lora or setup.method in ("dora", "peft")):
            # PEFT casts each adapter's input to the fp32 adapter dtype; autocast saves a bf16 copy per adapter.
            saved += compute * sum(i for i, _ in _targeted(shape, setup).values())
    if setup.method == "dora":
        # DoRA keeps the base output and the LoRA output of every adapted linear.
        saved += 2 * compute * sum(o for _, o in _targeted(shape, setup).values())
    return saved


def _logits_bytes(shape: ModelShape, setup: PlanSetup, trains_head: bool) -> float:
    if not setup.causal_lm:
        return 0.0
    compute = DTYPE_BYTES[setup.precision]
    tokens = setup.tokens
    if not setup.chunked_loss:
        # logits in the compute dtype, their fp32 copy and its fp32 gradient
        return tokens * shape.vocab * (compute + 8)
    rows = 256
    while rows < 8192 and 2 * rows * shape.vocab <= CHUNK_LOGITS:
        rows *= 2
    rows = min(rows, tokens)
    # The chunk's logits and their gradient (the softmax body is one compiled kernel on CUDA).
    total = rows * shape.vocab * 2 * compute + tokens * shape.hidden * compute  # chunk + grad of hidden states
    if trains_head:
        total += shape.vocab * shape.hidden * 4  # fp32 head gradient, summed over chunks
    if setup.method == "qlora":
        total += shape.vocab * shape.hidden * compute  # compute-dtype copy of the fp32 head
    return total


def plan_memory(shape: ModelShape, setup: PlanSetup, device_bytes: float | None = None) -> MemoryPlan:
    """Estimate the peak GPU memory of one process of the job.

    Args:
        shape: the model's sizes.
        setup: method, precision, tokens per micro-batch and the resolved speed settings.
        device_bytes: memory of one GPU (None: report the need only).
    """
    weight_bytes = DTYPE_BYTES[setup.precision]
    sharded = setup.world_size > 1 and setup.strategy == "fsdp"
    shards = setup.world_size if sharded else 1
    full = setup.method == "full"
    if setup.method == "qlora":
        linear = shape.layers * sum(i * o for i, o in shape.linears().values())
        weights = linear * NF4_BYTES + (shape.params - linear) * 4
    else:
        weights = shape.params * weight_bytes
    adapter = _adapter_params(shape, setup)
    trainable_bytes = shape.params * weight_bytes if full else adapter * 4
    components = {
        "weights": weights / shards if not full else trainable_bytes / shards,
        "adapters": 0.0 if full else adapter * 4 / shards,
        "gradients": trainable_bytes / shards,
        "optimizer": 2 * trainable_bytes / shards,
    }
    layers = shape.layers
    checkpointed = checkpointed_layer_count(setup.checkpoint_share, layers)
    full_layer = setup.tokens * _activation_bytes_per_token(shape, setup, checkpointed=False)
    kept_input = setup.tokens * _activation_bytes_per_token(shape, setup, checkpointed=True)
    activations = (layers - checkpointed) * full_layer + checkpointed * kept_input
    if checkpointed:
        activations += full_layer  # one layer recomputed at a time in backward
    components["activations"] = activations
    trains_head = full
    components["logits"] = _logits_bytes(shape, setup, trains_head)
    distributed = 0.0
    if sharded:
        distributed = 2 * shape.layer_params * weight_bytes  # a gathered layer and the prefetched next one
    elif setup.world_size > 1:
        distributed = trainable_bytes  # DDP's gradient buckets
    components["distributed"] = distributed
    static = components["weights"] + components["adapters"] + components["optimizer"] + distributed
    during_backward = components["activations"] + components["logits"]
    if full:
        # Gradients fill in as the backward frees activations.
        peak = static + max(during_backward, components["gradients"])
    else:
        peak = static + components["gradients"] + during_backward
    return MemoryPlan(setup, components, peak, checkpointed, layers, device_bytes)


def choose_checkpointing(shape: ModelShape, setup: PlanSetup, device_bytes: float) -> MemoryPlan:
    """The plan with the smallest share of recomputed layers that fits ``device_bytes`` (with the margin).

    Shares are whole layers (``k / layers``). When even full checkpointing does not fit, that
    plan is returned (its ``fits`` is False) so the caller can say by how much.
    """
    plan = None
    for count in range(shape.layers + 1):
        share = count / shape.layers
        plan = plan_memory(shape, _with(setup, checkpoint_share=share), device_bytes)
        if plan.fits:
            return plan
    assert plan is not None
    return plan


def choose_strategy(shape: ModelShape, setup: PlanSetup, device_bytes: float) -> str:
    """``ddp`` when a replica fits one GPU with full checkpointing at most, else ``fsdp`` (FSDP2)."""
    if setup.world_size == 1:
        return "ddp"
    replica = choose_checkpointing(shape, _with(setup, strategy="ddp"), device_bytes)
    return "ddp" if replica.fits else "fsdp"


def _with(setup: PlanSetup, **changes: Any) -> PlanSetup:
    return replace(setup, **changes)


def advice(plan: MemoryPlan) -> str:
    """What to change so a plan that does not fit would: the levers it does not use yet."""
    setup = plan.setup
    steps = []
    if plan.checkpointed_layers < plan.layers:
        steps.append("gradient_checkpointing: true")
    if setup.causal_lm and not setup.chunked_loss:
        steps.append("chunked_loss: true")
    if setup.tokens > 1:
        steps.append("a smaller batch_size or max_seq_len")
    if setup.world_size > 1 and setup.strategy != "fsdp":
        steps.append("distributed: fsdp")
    if setup.method in ("full", "lora", "dora"):
        steps.append("method qlora" if setup.method != "full" else "an adapter method (lora, qlora)")
    steps.append("more GPUs (procs_per_node) with fsdp" if setup.world_size == 1 else "more GPUs")
    return "; ".join(steps)
