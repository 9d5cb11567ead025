"""Load the pre-trained model and tokenizer, and wrap the model for the chosen method."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from kubetune.errors import ConfigError, ModelError
from kubetune.initializers.package_files import is_package_uri, resolve_package_file
from kubetune.spec.trainer import LLMConfig, ModelConfig

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def resolve_local(value: str | None, default: Path, what: str) -> Path:
    """The local path behind a config value: a plain path, a ``pkg://`` URI, or ``default``."""
    if value is None:
        return default
    if is_package_uri(value):
        return resolve_package_file(value)
    if "://" in value and not value.startswith("file://"):
        raise ConfigError(
            f"{what}: {value!r} is a remote URI; the trainer reads local paths only (fetch it with an initializer)"
        )
    return Path(value.removeprefix("file://")).expanduser()


def _pretrained_args(path: Path) -> tuple[str, dict]:
    """``from_pretrained`` arguments for a model folder or a single ``.gguf`` file."""
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelError(f"{path}: a model file must be .gguf; otherwise give the model folder")
        return str(path.parent), {"gguf_file": path.name}
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a Hugging Face model folder (no config.json)")
    return str(path), {}


def load_tokenizer(path: Path, config: ModelConfig):
    """Load the tokenizer; a missing pad token falls back to the end-of-sequence token."""
    from transformers import AutoTokenizer

    location, extra = _pretrained_args(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=config.trust_remote_code, **extra)
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load tokenizer: {err}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: Path, config: ModelConfig, precision: str):
    """Load the causal LM (or classifier) in the training precision, ready to save normally.

    Raises:
        ModelError: missing files, or an architecture transformers does not know.
    """
    import transformers

    location, extra = _pretrained_args(path)
    auto = (
        transformers.AutoModelForSequenceClassification
        if config.task == "sequence-classification"
        else transformers.AutoModelForCausalLM
    )
    kwargs: dict = {"dtype": DTYPES[precision], "trust_remote_code": config.trust_remote_code, **extra}
    if config.num_labels is not None:
        kwargs["num_labels"] = config.num_labels
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    try:
        model = auto.from_pretrained(location, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"{path}: cannot load model: {str(err).splitlines()[0]}") from None
    if "gguf_file" in extra:
        # GGUF weights are dequantized on load; drop the quantizer so the model saves as plain
        # safetensors like any other checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
    return model


def apply_method(model, config: LLMConfig):
    """Prepare ``model`` for the fine-tuning method: all weights, or a PEFT adapter."""
    if config.method == "full":
        return model
    if config.method in ("lora", "dora"):
        from peft import LoraConfig, TaskType, get_peft_model

        lora = config.lora
        task = TaskType.SEQ_CLS if config.model.task == "sequence-classification" else TaskType.CAUSAL_LM
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            use_rslora=lora.use_rslora,
            use_dora=config.method == "dora",
            task_type=task,
        )
        return get_peft_model(model, peft_config)
    raise ConfigError(f"method {config.method!r} is not available in this build of the trainer")


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
