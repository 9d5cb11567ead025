"""Typed configuration of the LLM Trainer (what ``BuiltinTrainer(config=...)`` carries).

Every field is validated when the config is built, so a bad value fails at the edge (CLI,
SDK ``train()``, YAML load) before any compute is spent. Unknown fields are rejected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kubetune.spec.base import StrictModel

Method = Literal["full", "lora", "qlora", "dora", "prefix", "prompt"]
DataFormat = Literal["alpaca", "messages", "completion", "text"]
Precision = Literal["fp32", "bf16"]


class ModelConfig(StrictModel):
    """The pre-trained model to fine-tune.

    ``path`` is a local Hugging Face model directory, a ``.gguf`` file, or a
    ``pkg://<distribution>/<file>`` reference to a file shipped inside an installed Python
    package. When it is left empty the trainer reads ``<run>/model``, where the model
    initializer put it.
    """

    path: str | None = Field(default=None, description="Model directory, .gguf file or pkg:// URI.")
    task: Literal["causal-lm", "sequence-classification"] = "causal-lm"
    num_labels: int | None = Field(default=None, ge=2, description="Labels, for classification.")
    trust_remote_code: bool = False
    attn_implementation: Literal["sdpa", "eager", "flex_attention"] | None = None


class DatasetConfig(StrictModel):
    """The training data and how to turn its rows into token sequences.

    Formats and the columns they need (after ``column_map`` renames them):

    - ``alpaca``: ``instruction``, ``output`` (``input`` optional)
    - ``completion``: ``prompt``, ``completion``
    - ``messages``: ``messages`` (a list of ``{"role", "content"}``), rendered with the
      tokenizer's chat template
    - ``text``: ``text`` (plain language modelling; every token is a target)
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
    max_samples: int | None = Field(default=None, ge=1)
    eval_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    train_on_inputs: bool = Field(
        default=False, description="Also train on prompt tokens (default: response tokens only)."
    )

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
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    use_rslora: bool = False


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
    precision: Precision = "fp32"
    seed: int = 42
    gradient_checkpointing: bool = False
    gradient_checkpointing_fraction: float = Field(
        default=1.0, gt=0, le=1, description="Share of decoder layers recomputed when gradient_checkpointing is on."
    )
    packing: bool = Field(
        default=False, description="Concatenate each micro-batch into one padding-free row (per-example attention)."
    )
    chunked_loss: bool = Field(
        default=False, description="Fuse the LM head with the loss in chunks; full fp32 logits never exist."
    )
    compile: bool = Field(default=False, description="torch.compile each decoder layer.")
    log_every: int = Field(default=1, ge=1)


class OutputConfig(StrictModel):
    """What the trainer exports at the end."""

    save_adapter: bool = True
    save_merged: bool = True


class LLMConfig(StrictModel):
    """Everything the LLM Trainer needs: model, data, method and loop settings."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    method: Method = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _check_causal_only_options(self) -> LLMConfig:
        if self.model.task != "causal-lm":
            for name in ("packing", "chunked_loss"):
                if getattr(self.training, name):
                    raise ValueError(f"training.{name} needs model.task 'causal-lm'")
        return self
