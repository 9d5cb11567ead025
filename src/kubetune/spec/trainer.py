"""Typed configuration of the LLM Trainer (what ``BuiltinTrainer(config=...)`` carries).

Every field is validated when the config is built, so a bad value fails at the edge (CLI,
SDK ``train()``, YAML load) before any compute is spent. Unknown fields are rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import ConfigDict, Field, TypeAdapter, field_validator, model_validator

from kubetune.spec.base import StrictModel, deep_merge
from kubetune.spec.dataset_split import DatasetSplit, split_from_uri
from kubetune.spec.evaluation import CLASSIFICATION_FORMATS, EvaluationConfig, check_metrics
from kubetune.spec.hf_configs import merge_hugging_face_objects
from kubetune.spec.tracking import PushConfig, Tracker, TrackingConfig

Task = Literal["causal-lm", "sequence-classification", "token-classification"]
#: The dataset format each classifier task trains on (and only it).
TASK_FORMATS = {"sequence-classification": "classification", "token-classification": "tagging"}
#: Hugging Face tasks kubetune does not train, with what to do instead.
UNSUPPORTED_TASKS = {
    "question-answering": "train the answers as a 'completion' dataset on a causal-lm model",
    "masked-lm": "continue pre-training with format 'text' on a causal-lm model",
    "image-classification": "kubetune trains text models only",
}
Method = Literal["full", "lora", "qlora", "dora", "prefix", "prompt", "peft"]
DataFormat = Literal["alpaca", "messages", "completion", "text", "classification", "tagging", "preference", "kto"]
Precision = Literal["auto", "fp32", "bf16"]
Distributed = Literal["auto", "ddp", "fsdp"]
#: A speed setting: on, off, or ``auto`` (resolved once by the trainer from model, method, data and device).
Switch = bool | Literal["auto"]
#: The speed settings that default to ``auto`` (see ``kubetune.trainer.speed_plan``).
SPEED_SETTINGS = ("precision", "packing", "chunked_loss", "fused_lora", "compile", "gradient_checkpointing")

#: Methods FSDP2 can shard (``training.distributed: fsdp``); the others run on DDP.
FSDP_METHODS = ("full", "lora", "dora")

#: The default checkpoint period: a preempted or crashed job loses at most this much training.
DEFAULT_CHECKPOINT_EVERY = "30m"
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def duration_seconds(text: str) -> float:
    """``'1h30m'`` -> 5400.0; ``'90s'``, ``'30m'``, ``'0.5h'``. Raises ValueError naming the accepted forms."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is neither a number of steps (500) nor a duration (30m, 90s, 1h30m)")
    hours, minutes, seconds = (float(group or 0) for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r}: a checkpoint period must be longer than zero")
    return total


class ModelConfig(StrictModel):
    """The pre-trained model to fine-tune.

    ``path`` is a local Hugging Face model directory, a ``.gguf`` file, or a
    ``pkg://<distribution>/<file>`` reference to a file shipped inside an installed Python
    package. When it is left empty the trainer reads ``<run>/model``, where the model
    initializer put it.
    """

    path: str | None = Field(default=None, description="Model directory, .gguf file or pkg:// URI.")
    task: Task = "causal-lm"
    num_labels: int | None = Field(default=None, ge=2, description="Labels, for classification.")
    trust_remote_code: bool = False
    attn_implementation: Literal["sdpa", "eager", "flex_attention"] | None = None

    @field_validator("task", mode="before")
    @classmethod
    def _known_task(cls, value: object) -> object:
        if isinstance(value, str) and value in UNSUPPORTED_TASKS:
            raise ValueError(
                f"{value!r} is not supported: kubetune trains 'causal-lm', 'sequence-classification' and "
                f"'token-classification' models ({UNSUPPORTED_TASKS[value]})"
            )
        return value


class DatasetConfig(StrictModel):
    """The training data and how to turn its rows into token sequences.

    Formats and the columns they need (after ``column_map`` renames them):

    - ``alpaca``: ``instruction``, ``output`` (``input`` optional)
    - ``completion``: ``prompt``, ``completion``
    - ``messages``: ``messages`` (a list of ``{"role", "content"}``), rendered with the
      tokenizer's chat template
    - ``text``: ``text`` (plain language modelling; every token is a target)
    - ``classification``: ``text``, ``label`` (a class name or index; needs
      ``model.task: sequence-classification``)
    - ``tagging``: ``tokens`` (a list of words), ``tags`` (a class name or index per word; needs
      ``model.task: token-classification``). A word's first sub-word token carries its tag.
    - ``preference``: ``prompt``, ``chosen``, ``rejected`` (plain strings, or message lists
      rendered with the tokenizer's chat template); for the preference objectives (``dpo``,
      ``simpo``, ``orpo``, ``reward``)
    - ``kto``: ``prompt``, ``completion`` (strings or messages), ``label`` (``true``:
      desirable, ``false``: undesirable; the file needs both); for ``objective: kto``
    """

    path: str | None = Field(
        default=None,
        description="File or directory (json, jsonl, csv, parquet, txt; .gz allowed) or pkg:// URI.",
    )
    format: DataFormat = "alpaca"
    column_map: dict[str, str] = Field(
        default_factory=dict, description="Rename columns: {format column: column in the file}."
    )
    preprocess: str | None = Field(
        default=None,
        description="Import path 'module:function' mapping one raw row to a row of the format.",
    )
    split: str | None = Field(
        default=None,
        description="Split expression: 'train', 'train[:3000]', 'train[10%:]' (files by split name, then rows).",
    )
    max_samples: int | None = Field(default=None, ge=1)
    eval_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    train_on_inputs: bool = Field(
        default=False, description="Also train on prompt tokens (default: response tokens only)."
    )
    labels: list[str] | None = Field(
        default=None,
        min_length=2,
        description="Class names for 'classification' and 'tagging', in index order (default: sorted distinct labels).",
    )

    @model_validator(mode="before")
    @classmethod
    def _split_in_path(cls, data: Any) -> Any:
        """``path: hf://org/name?split=train[:3000]`` is ``path: hf://org/name`` plus ``split``."""
        if not isinstance(data, dict) or not isinstance(data.get("path"), str):
            return data
        path, split = split_from_uri(data["path"])
        if split is None:
            return data
        if data.get("split") not in (None, split):
            raise ValueError(f"the split is given twice: {split!r} in path and {data['split']!r} in split")
        return {**data, "path": path, "split": split}

    @field_validator("split")
    @classmethod
    def _split_expression(cls, value: str | None) -> str | None:
        return None if value is None else str(DatasetSplit.parse(value))

    def parsed_split(self) -> DatasetSplit | None:
        """The split expression, parsed (None: every file and row)."""
        return None if self.split is None else DatasetSplit.parse(self.split)

    @model_validator(mode="after")
    def _check_preprocess(self) -> DatasetConfig:
        if self.preprocess is not None and ":" not in self.preprocess:
            raise ValueError("preprocess must look like 'package.module:function'")
        return self


class LoraConfig(StrictModel):
    """Low-rank adapter settings, used by the ``lora``, ``qlora`` and ``dora`` methods."""

    r: int = Field(default=16, ge=1)
    alpha: float = Field(default=32.0, gt=0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        default="all-linear",
        description="Modules to adapt: names, 'all-linear', or null for PEFT's default modules of the architecture.",
    )
    use_rslora: bool = Field(default=False, description="Scale by alpha/sqrt(r) instead of alpha/r (rsLoRA).")


class PromptLearningConfig(StrictModel):
    """Virtual-token settings, used by the ``prefix`` and ``prompt`` methods."""

    num_virtual_tokens: int = Field(default=20, ge=1)
    init_text: str | None = Field(
        default=None, description="Prompt tuning only: initialise the virtual tokens from this text."
    )
    prefix_projection: bool = Field(default=False, description="Prefix tuning only: reparameterise with an MLP.")


class PeftPassThrough(StrictModel):
    """Any other PEFT method, by name: ``{type: ia3, target_modules: [...], ...}``.

    ``type`` is the PEFT type (``ia3``, ``loha``, ``lokr``, ``adalora``, ``vera``, ...); every
    other key is passed unchanged to that method's PEFT config class.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    #: PEFT types that kubetune asks for with a method of its own.
    OWN_METHODS: ClassVar[dict[str, str]] = {"lora": "lora", "prefix_tuning": "prefix", "prompt_tuning": "prompt"}

    type: str = Field(description="PEFT method name, e.g. 'ia3'.")

    @field_validator("type")
    @classmethod
    def _not_an_own_method(cls, value: str) -> str:
        method = cls.OWN_METHODS.get(value.lower())
        if method is not None:
            raise ValueError(
                f"{value!r} has a method of its own: use method: {method} instead of peft: {{type: {value}}}"
            )
        return value

    def options(self) -> dict[str, Any]:
        """The keyword arguments for the PEFT config class (everything except ``type``)."""
        return dict(self.model_extra or {})


class FullMethod(StrictModel):
    """``method: full``: every weight trains; no section of its own."""

    method: Literal["full"] = "full"


class LoraMethod(StrictModel):
    """``method: lora``: low-rank adapters, set in the ``lora:`` section."""

    method: Literal["lora"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)


class QLoraMethod(LoraMethod):
    """``method: qlora``: LoRA over a 4-bit NF4 base, set in the ``lora:`` section."""

    method: Literal["qlora"] = "qlora"


class DoraMethod(LoraMethod):
    """``method: dora``: weight-decomposed LoRA, set in the ``lora:`` section."""

    method: Literal["dora"] = "dora"


class PrefixMethod(StrictModel):
    """``method: prefix``: prefix tuning, set in the ``prompt_learning:`` section."""

    method: Literal["prefix"] = "prefix"
    prompt_learning: PromptLearningConfig = Field(default_factory=PromptLearningConfig)


class PromptMethod(PrefixMethod):
    """``method: prompt``: prompt tuning, set in the ``prompt_learning:`` section."""

    method: Literal["prompt"] = "prompt"


class PeftMethod(StrictModel):
    """``method: peft``: any other PEFT method, named in the ``peft:`` section."""

    method: Literal["peft"] = "peft"
    peft: PeftPassThrough


#: The typed config of the chosen method, told apart by ``method``.
MethodConfig = Annotated[
    FullMethod | LoraMethod | QLoraMethod | DoraMethod | PrefixMethod | PromptMethod | PeftMethod,
    Field(discriminator="method"),
]
_METHOD_ADAPTER: TypeAdapter[MethodConfig] = TypeAdapter(MethodConfig)
#: Each method's config class, by method name.
METHOD_CONFIGS: dict[str, type[StrictModel]] = {
    cls.model_fields["method"].default: cls
    for cls in (FullMethod, LoraMethod, QLoraMethod, DoraMethod, PrefixMethod, PromptMethod, PeftMethod)
}


def method_sections(method: str) -> tuple[str, ...]:
    """The sections ``method`` reads (``("lora",)`` for lora); empty for an unknown method."""
    cls = METHOD_CONFIGS.get(method)
    return () if cls is None else tuple(name for name in cls.model_fields if name != "method")


#: Every method's section (``lora``, ``prompt_learning``, ``peft``).
METHOD_SECTIONS = tuple(dict.fromkeys(section for method in METHOD_CONFIGS for section in method_sections(method)))


class DpoConfig(StrictModel):
    """Direct Preference Optimization: the policy's log-prob margin over a reference model's."""

    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field(
        default="sigmoid", description="'sigmoid' (DPO), 'ipo' (squared, length-normalised) or 'hinge' (SLiC)."
    )
    beta: float = Field(default=0.1, gt=0, description="Strength of the implicit KL penalty to the reference.")
    label_smoothing: float = Field(
        default=0.0, ge=0.0, lt=0.5, description="Sigmoid loss only: assumed share of flipped preference labels."
    )
    precompute_reference: bool = Field(
        default=False,
        description="Compute the reference log-probs in one pass before training (no reference model in memory).",
    )


class SimpoConfig(StrictModel):
    """SimPO: reference-free; length-normalised log-prob margin with a target reward margin."""

    beta: float = Field(default=2.0, gt=0, description="Scale of the length-normalised reward.")
    gamma: float = Field(default=0.5, ge=0, description="Target reward margin.")


class OrpoConfig(StrictModel):
    """ORPO: the SFT loss on the chosen response plus an odds-ratio term (``lambda`` weights it)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_by_name=True, serialize_by_alias=True)

    lambda_: float = Field(default=0.1, gt=0, alias="lambda", description="Weight of the odds-ratio term.")


class KtoConfig(StrictModel):
    """KTO: unpaired desirable and undesirable completions against a reference model, with a KL
    reference point estimated from mismatched prompt/completion pairs (as TRL's KTOTrainer)."""

    beta: float = Field(default=0.1, gt=0, description="Strength of the implicit KL penalty to the reference.")
    desirable_weight: float = Field(default=1.0, gt=0, description="Weight of the desirable rows' losses.")
    undesirable_weight: float = Field(default=1.0, gt=0, description="Weight of the undesirable rows' losses.")
    precompute_reference: bool = Field(
        default=False,
        description="Compute the reference log-probs in one pass before training (no reference model in memory).",
    )


#: Dataset formats of the SFT objective (every format but ``preference`` and ``kto``).
SFT_FORMATS: tuple[str, ...] = ("alpaca", "messages", "completion", "text", "classification", "tagging")


class ObjectiveSection(StrictModel):
    """What every objective's typed config says besides its settings: the dataset formats it
    trains on and whether it can run on FSDP2 shards."""

    FORMATS: ClassVar[tuple[str, ...]] = ("preference",)

    def sharding_problem(self, full_finetune: bool) -> str | None:
        """Why this objective cannot run on FSDP2 shards (None: it can)."""
        return None


def reference_sharding_problem(objective: str, precompute_reference: bool, full_finetune: bool) -> str | None:
    """Why an objective with a reference model cannot run on FSDP2 shards (None: it can).

    An adapter method's reference is the same sharded model with its adapters switched off,
    inside the sharded forward. A full fine-tune's frozen copy would be a second sharded model,
    and the one-off precompute pass runs forwards outside the sharded root: neither is built.
    """
    if precompute_reference:
        return (
            f"{objective}.precompute_reference runs on training.distributed 'ddp', not 'fsdp' "
            "(the one-off reference pass is not built for FSDP2 shards)"
        )
    if full_finetune:
        return (
            f"objective {objective!r} with method 'full' runs on training.distributed 'ddp', not 'fsdp': "
            "its reference is a frozen copy of the model, not built for FSDP2 shards (an adapter method's "
            "reference is the sharded model with its adapters off)"
        )
    return None


class SftObjective(ObjectiveSection):
    """``objective: sft``: next-token cross-entropy on the targets (or class cross-entropy)."""

    FORMATS: ClassVar[tuple[str, ...]] = SFT_FORMATS
    objective: Literal["sft"] = "sft"


class DpoObjective(ObjectiveSection):
    """``objective: dpo``: set in the ``dpo:`` section."""

    objective: Literal["dpo"] = "dpo"
    dpo: DpoConfig = Field(default_factory=DpoConfig)

    def sharding_problem(self, full_finetune: bool) -> str | None:
        """See :func:`reference_sharding_problem`."""
        return reference_sharding_problem("dpo", self.dpo.precompute_reference, full_finetune)


class SimpoObjective(ObjectiveSection):
    """``objective: simpo``: set in the ``simpo:`` section."""

    objective: Literal["simpo"] = "simpo"
    simpo: SimpoConfig = Field(default_factory=SimpoConfig)


class OrpoObjective(ObjectiveSection):
    """``objective: orpo``: set in the ``orpo:`` section."""

    objective: Literal["orpo"] = "orpo"
    orpo: OrpoConfig = Field(default_factory=OrpoConfig)


class KtoObjective(ObjectiveSection):
    """``objective: kto``: set in the ``kto:`` section."""

    FORMATS: ClassVar[tuple[str, ...]] = ("kto",)
    objective: Literal["kto"] = "kto"
    kto: KtoConfig = Field(default_factory=KtoConfig)

    def sharding_problem(self, full_finetune: bool) -> str | None:
        """See :func:`reference_sharding_problem`."""
        return reference_sharding_problem("kto", self.kto.precompute_reference, full_finetune)


class RewardObjective(ObjectiveSection):
    """``objective: reward``: a Bradley-Terry reward model (``model.task: sequence-classification``,
    one output): ``-log sigmoid(r(chosen) - r(rejected))`` per pair; no section of its own."""

    objective: Literal["reward"] = "reward"

    def sharding_problem(self, full_finetune: bool) -> str | None:
        """A sharded reward model (its score head under FSDP2) is not tested yet: refused."""
        return "objective 'reward' runs on training.distributed 'ddp', not 'fsdp' (a sharded reward model is untested)"


#: Every objective's typed config class; a new objective adds its class here (and its section
#: field to :class:`LLMConfig`).
_OBJECTIVE_CLASSES: tuple[type[ObjectiveSection], ...] = (
    SftObjective,
    DpoObjective,
    SimpoObjective,
    OrpoObjective,
    KtoObjective,
    RewardObjective,
)
#: Each objective's config class, by objective name.
OBJECTIVE_CONFIGS: dict[str, type[ObjectiveSection]] = {
    cls.model_fields["objective"].default: cls for cls in _OBJECTIVE_CLASSES
}
#: The typed config of the chosen objective, told apart by ``objective``.
ObjectiveConfig = Annotated[Union[_OBJECTIVE_CLASSES], Field(discriminator="objective")]  # noqa: UP007
_OBJECTIVE_ADAPTER: TypeAdapter[ObjectiveConfig] = TypeAdapter(ObjectiveConfig)
#: The objective names ``objective:`` accepts.
Objective = Literal[tuple(OBJECTIVE_CONFIGS)]  # type: ignore[valid-type]


def objective_sections(objective: str) -> tuple[str, ...]:
    """The sections ``objective`` reads (``("dpo",)`` for dpo); empty for sft or an unknown objective."""
    cls = OBJECTIVE_CONFIGS.get(objective)
    return () if cls is None else tuple(name for name in cls.model_fields if name != "objective")


#: Every objective's section (``dpo``, ``simpo``, ``orpo``).
OBJECTIVE_SECTIONS = tuple(
    dict.fromkeys(section for objective in OBJECTIVE_CONFIGS for section in objective_sections(objective))
)
#: (choice field, its sections of one choice, every section), for methods and objectives alike.
_CHOICES = (("method", method_sections, METHOD_SECTIONS), ("objective", objective_sections, OBJECTIVE_SECTIONS))


def merge_llm_config(defaults: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    """A runtime's LLM config (``defaults``) deep-merged under a job's (``user``), method- and
    objective-aware: when the job picks another method (objective), the runtime's sections of
    its own method (objective) are dropped."""
    for field, _, sections in _CHOICES:
        chosen = user.get(field)
        if chosen is not None and chosen != defaults.get(field):
            defaults = {key: value for key, value in defaults.items() if key not in sections}
    return deep_merge(defaults, user)


class TrainingConfig(StrictModel):
    """Optimisation and loop settings."""

    max_steps: int | None = Field(default=None, ge=1, description="Optimizer steps; overrides epochs.")
    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=4, ge=1, description="Sequences per device per micro-step.")
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    max_seq_len: int = Field(default=1024, ge=8)
    precision: Precision = Field(default="auto", description="'auto': bf16 on a CUDA GPU that supports it, else fp32.")
    seed: int = 42
    gradient_checkpointing: Switch = Field(
        default="auto",
        description="Recompute layers in backward. 'auto': the smallest share of layers the memory plan needs.",
    )
    gradient_checkpointing_fraction: float = Field(
        default=1.0, gt=0, le=1, description="Share of decoder layers recomputed when gradient_checkpointing is true."
    )
    packing: Switch = Field(
        default="auto", description="Concatenate each micro-batch into one padding-free row (per-example attention)."
    )
    chunked_loss: Switch = Field(
        default="auto", description="Fuse the LM head with the loss in chunks; full fp32 logits never exist."
    )
    compile: Switch = Field(default="auto", description="torch.compile each decoder layer.")
    fused_lora: Switch = Field(
        default="auto",
        description="LoRA/QLoRA: adapter matmuls in the base matmul's epilogue, no per-adapter dtype casts.",
    )
    log_every: int = Field(default=1, ge=1)
    eval_every: int | None = Field(
        default=None, ge=1, description="Eval loss every N steps (and at the end) when there is an eval split."
    )
    checkpoint_every: int | str | None = Field(
        default=DEFAULT_CHECKPOINT_EVERY,
        description="Checkpoint every N steps (an integer) or every period of training time ('30m', '90s', "
        "'1h30m'), and at the end; null: only when preempted.",
    )
    keep_checkpoints: int = Field(default=2, ge=1, description="Keep the newest K checkpoints.")
    resume: Literal["auto", "never"] = Field(
        default="auto", description="'auto': continue from the newest complete checkpoint in the run directory."
    )
    distributed: Distributed = Field(
        default="auto",
        description="Multi-process strategy: 'ddp' (replicate), 'fsdp' (FSDP2 shards) or 'auto' (DDP when a "
        "replica fits the GPU, else FSDP2).",
    )

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _check_checkpoint_every(cls, value: object) -> int | str | None:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if value is None or isinstance(value, str):
            if value is not None:
                duration_seconds(value)
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected a number of steps (500) or a duration (30m, 90s, 1h30m), not {value!r}")
        if value < 1:
            raise ValueError("a number of steps must be at least 1")
        return value

    def checkpoint_interval_s(self) -> float | None:
        """The checkpoint period in seconds of training when ``checkpoint_every`` is a duration, else None."""
        every = self.checkpoint_every
        return duration_seconds(every) if isinstance(every, str) else None

    def checkpoint_interval_steps(self) -> int | None:
        """The checkpoint period in optimizer steps when ``checkpoint_every`` is a number, else None."""
        every = self.checkpoint_every
        return every if isinstance(every, int) else None


class OutputConfig(PushConfig):
    """What the trainer exports at the end, and where the exporter pushes it (:class:`PushConfig`)."""

    save_adapter: bool = True
    save_merged: bool = True


class LLMConfig(StrictModel):
    """Everything the LLM Trainer needs: model, data, method, objective and loop settings.

    ``method`` chooses one of the typed method configs (:data:`MethodConfig`); only that
    method's section may be given (``lora:`` for lora/qlora/dora, ``prompt_learning:`` for
    prefix/prompt, ``peft:`` for peft). A section holds what the job wrote (None when left
    out); :attr:`method_config` is the chosen method's config with its defaults filled in.
    ``objective`` chooses the loss the same way (:data:`ObjectiveConfig`, sections ``dpo:``,
    ``simpo:``, ``orpo:``, ``kto:``; :attr:`objective_config`); each objective names the dataset formats
    it trains on.

    ``training`` also takes a ``transformers.TrainingArguments``, and ``lora`` a
    ``peft.LoraConfig`` (``peft`` any PEFT config object): they become kubetune settings field by
    field, as :mod:`kubetune.spec.hf_configs` (and docs/kubeflow.md) say; a field kubetune does
    not implement is refused with a one-line ConfigError naming it.
    """

    model: ModelConfig = Field(default_factory=ModelConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    method: Method = "lora"
    lora: LoraConfig | None = Field(default=None, description="Settings of methods lora, qlora and dora.")
    prompt_learning: PromptLearningConfig | None = Field(
        default=None, description="Settings of methods prefix and prompt."
    )
    peft: PeftPassThrough | None = Field(default=None, description="Settings of method 'peft' (any PEFT method).")
    objective: Objective = Field(default="sft", description="The training loss: sft, dpo, simpo, orpo, kto or reward.")
    dpo: DpoConfig | None = Field(default=None, description="Settings of objective 'dpo'.")
    simpo: SimpoConfig | None = Field(default=None, description="Settings of objective 'simpo'.")
    orpo: OrpoConfig | None = Field(default=None, description="Settings of objective 'orpo'.")
    kto: KtoConfig | None = Field(default=None, description="Settings of objective 'kto'.")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    report_to: list[Tracker] | None = Field(
        default=None,
        description="Trackers fed by trainer rank 0: tensorboard, mlflow, wandb "
        "(default: tensorboard when the package is installed; [] for none).",
    )
    strict_tracking: bool = Field(
        default=False,
        description="Fail the job when a tracker is unreachable (at start: before training), "
        "instead of warning once and retrying with backoff.",
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Settings of the trackers.")
    evaluation: EvaluationConfig | None = Field(
        default=None, description="Score the model on a held-out file by generation at the end (and every N steps)."
    )

    @model_validator(mode="after")
    def _trackers_configured(self) -> LLMConfig:
        trackers = self.report_to or []
        if len(set(trackers)) != len(trackers):
            raise ValueError("report_to names a tracker twice")
        if "mlflow" in trackers and self.tracking.mlflow is None:
            raise ValueError("report_to 'mlflow' needs tracking.mlflow.tracking_uri")
        if self.output.register_model is not None and "mlflow" not in trackers:
            raise ValueError("output.register_model registers in MLflow: add 'mlflow' to report_to")
        return self

    @model_validator(mode="before")
    @classmethod
    def _sections_of_the_method(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = merge_hugging_face_objects(data)
        for field, sections_of, every_section in _CHOICES:
            chosen = data.get(field, cls.model_fields[field].default)
            if chosen not in get_args(cls.model_fields[field].annotation):
                continue  # an unknown value: the field's own validation names the allowed values
            allowed = sections_of(chosen)
            for section in every_section:
                if data.get(section) is not None and section not in allowed:
                    uses = f"its section is '{allowed[0]}'" if allowed else "it has no section"
                    raise ValueError(f"'{section}' is not a setting of {field} {chosen!r} ({uses})")
        method = data.get("method", cls.model_fields["method"].default)
        if method == "peft" and data.get("peft") is None:
            raise ValueError("method 'peft' needs a 'peft' section naming the PEFT type, e.g. peft: {type: ia3}")
        return data

    @model_validator(mode="after")
    def _check_combination(self) -> LLMConfig:
        if self.model.task != "causal-lm":
            for name in ("packing", "chunked_loss"):
                if getattr(self.training, name) is True:
                    raise ValueError(f"training.{name} needs model.task 'causal-lm'")
        if "prompt_learning" in method_sections(self.method):  # virtual tokens
            for name in ("packing", "chunked_loss"):
                if getattr(self.training, name) is True:
                    raise ValueError(f"training.{name} cannot be combined with method {self.method!r} (virtual tokens)")
        reward = self.objective == "reward"
        if reward and self.model.task != "sequence-classification":
            raise ValueError("objective 'reward' trains a scalar head: it needs model.task 'sequence-classification'")
        for task, data_format in TASK_FORMATS.items():
            if reward:
                break  # a reward model is a sequence classifier trained on preference pairs
            if (self.dataset.format == data_format) != (self.model.task == task):
                raise ValueError(
                    f"dataset.format {data_format!r} and model.task {task!r} go together "
                    f"(got format {self.dataset.format!r}, task {self.model.task!r})"
                )
        if self.training.distributed == "fsdp" and self.method == "qlora":
            raise ValueError(
                "training.distributed 'fsdp' cannot shard QLoRA's 4-bit base (bitsandbytes' Params4bit is not an "
                "FSDP2-shardable tensor); use 'ddp', or method 'lora' with 'fsdp' for a base larger than one GPU"
            )
        if self.training.distributed == "fsdp" and self.method not in FSDP_METHODS:
            raise ValueError(
                f"training.distributed 'fsdp' shards methods 'full', 'lora' and 'dora'; use 'ddp' with {self.method!r}"
            )
        formats = OBJECTIVE_CONFIGS[self.objective].FORMATS
        if self.dataset.format not in formats:
            raise ValueError(
                f"objective {self.objective!r} trains on dataset.format {' or '.join(map(repr, formats))}, "
                f"not format {self.dataset.format!r}"
            )
        if self.objective == "kto" and self.training.batch_size < 2:
            raise ValueError(
                "objective 'kto' needs training.batch_size >= 2: its KL reference point pairs each prompt with "
                "another row's completion of the same micro-batch"
            )
        if self.objective != "sft" and self.training.chunked_loss is True:
            raise ValueError(f"training.chunked_loss cannot be combined with objective {self.objective!r}")
        if self.training.distributed == "fsdp":
            problem = self.objective_config.sharding_problem(full_finetune=self.method == "full")
            if problem is not None:
                raise ValueError(problem)
        if self.evaluation is not None:
            self._check_evaluation(self.evaluation)
        return self

    def _check_evaluation(self, evaluation: EvaluationConfig) -> None:
        data_format = evaluation.format or self.dataset.format
        try:
            check_metrics(data_format, evaluation.metrics)
        except ValueError as err:
            raise ValueError(f"evaluation: {err}") from None
        if self.objective == "reward":
            raise ValueError("evaluation: a reward model (objective 'reward') scores pairs; it has no answers to score")
        classifier = self.model.task == "sequence-classification"
        if classifier != (data_format in CLASSIFICATION_FORMATS):
            raise ValueError(
                f"evaluation: format {data_format!r} does not fit model.task {self.model.task!r} "
                "(a classifier is scored on 'classification' rows, a causal-lm by generating answers)"
            )
        if self.training.distributed == "fsdp":
            raise ValueError(
                "evaluation runs on training.distributed 'ddp' (generating with FSDP shards is not built yet)"
            )

    @property
    def method_config(self) -> MethodConfig:
        """The chosen method's typed config (its ``method`` and its section), picked by ``method``."""
        given = {name: value for name in method_sections(self.method) if (value := getattr(self, name)) is not None}
        return _METHOD_ADAPTER.validate_python({"method": self.method, **given})

    @property
    def objective_config(self) -> ObjectiveConfig:
        """The chosen objective's typed config (its ``objective`` and its section), picked by ``objective``."""
        given = {
            name: value for name in objective_sections(self.objective) if (value := getattr(self, name)) is not None
        }
        return _OBJECTIVE_ADAPTER.validate_python({"objective": self.objective, **given})
