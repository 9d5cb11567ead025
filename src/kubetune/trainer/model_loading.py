"""Load the pre-trained model and tokenizer, and wrap the model for the chosen method."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import torch

from kubetune.errors import ConfigError, ModelError
from kubetune.spec.trainer import LLMConfig, ModelConfig
from kubetune.trainer.kernels.checkpointing import checkpoint_layers
from kubetune.trainer.methods import build_peft_config, method_support, trains_adapter
from kubetune.trainer.model_files import pretrained_location

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: The transformers Auto class of each model task.
AUTO_CLASSES = {
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}


def _check_architecture(path: Path, trust_remote_code: bool) -> None:
    """Refuse a model folder whose ``config.json`` is unreadable or names an architecture transformers lacks."""
    import json

    from transformers import CONFIG_MAPPING

    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise ModelError(f"{path}: config.json is not a readable JSON object") from None
    if model_type not in CONFIG_MAPPING and not trust_remote_code:
        raise ModelError(
            f"{path}: unknown model architecture {model_type!r} (this transformers does not know it; a model that "
            "ships its own code needs model.trust_remote_code: true)"
        )


GGUF_CACHE_ENV = "KUBETUNE_GGUF_CACHE"


def gguf_cache_dir() -> Path:
    """Where converted GGUF models are kept: ``$KUBETUNE_GGUF_CACHE``, else ``~/.cache/kubetune/gguf``."""
    configured = os.environ.get(GGUF_CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "kubetune" / "gguf"


def converted_gguf(gguf: Path) -> Path:
    """A plain safetensors folder (fp32 weights, tokenizer) for a ``.gguf`` file, converted once.

    The folder is keyed by the file's sha256, so every run (and ``kubetune validate``) of the
    same model reuses one conversion instead of dequantizing again; a changed file gets a new one.

    Raises:
        ModelError: the file cannot be read as a GGUF model.
    """
    import transformers
    from filelock import FileLock

    digest = hashlib.sha256()
    with gguf.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    target = gguf_cache_dir() / digest.hexdigest()
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if (target / "config.json").is_file():
            return target
        log.info("converting %s to safetensors once (cached in %s)", gguf, target)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            kwargs = {"gguf_file": gguf.name}
            model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
            tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"{gguf}: cannot read the GGUF model: {str(err).splitlines()[0]}") from None
        model.hf_quantizer = None  # dequantized on load: save plain weights
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
    return target


def _pretrained_args(path: Path, trust_remote_code: bool) -> str:
    """The ``from_pretrained`` location of a model folder or ``.gguf`` file (converted once, cached)."""
    location, extra = pretrained_location(path)
    if "gguf_file" in extra:
        return str(converted_gguf(Path(location) / extra["gguf_file"]))
    _check_architecture(path, trust_remote_code)
    return location


def load_tokenizer(path: Path, config: ModelConfig):
    """Load the tokenizer; a missing pad token falls back to the end-of-sequence token."""
    from transformers import AutoTokenizer

    location = _pretrained_args(path, config.trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load tokenizer: {' '.join(str(err).split())}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_environment(config: LLMConfig) -> None:
    """Refuse a config this machine cannot run, before anything is loaded.

    Raises:
        ConfigError: QLoRA without a CUDA GPU or without bitsandbytes.
    """
    if not method_support(config).quantized_base:
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            "method 'qlora' needs a CUDA GPU (4-bit NF4 weights via bitsandbytes); this machine has none: "
            "use method 'lora' on CPU"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("method 'qlora' needs the bitsandbytes package: pip install bitsandbytes") from None


def load_model(
    path: Path,
    config: ModelConfig,
    precision: str,
    label_names: list[str] | None = None,
    pad_token_id: int | None = None,
    quantize_4bit_on: torch.device | None = None,
):
    """Load the causal LM (or classifier) in the training precision, ready to save normally.

    Args:
        path: model folder or ``.gguf`` file.
        config: the model section of the trainer config.
        precision: ``fp32`` or ``bf16`` (also the compute dtype of 4-bit layers).
        label_names: classification and tagging only: the classes, in index order.
        pad_token_id: classification and tagging only: lets decoder classifiers find the last real token.
        quantize_4bit_on: load the weights as 4-bit NF4 (QLoRA) on this CUDA device.

    Raises:
        ModelError: missing files, or an architecture transformers does not know.
    """
    import transformers

    location = _pretrained_args(path, config.trust_remote_code)
    auto, kwargs = _load_arguments(config, precision, label_names)
    if quantize_4bit_on is not None:
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=DTYPES[precision],
        )
        kwargs["device_map"] = {"": quantize_4bit_on}
    try:
        model = auto.from_pretrained(location, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"{path}: cannot load model: {str(err).splitlines()[0]}") from None
    if config.task != "causal-lm" and pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model


def _load_arguments(config: ModelConfig, precision: str, label_names: list[str] | None) -> tuple[type, dict]:
    """The transformers auto class and the ``from_pretrained`` keyword arguments for ``config``."""
    import transformers

    classify = config.task != "causal-lm"
    auto = getattr(transformers, AUTO_CLASSES[config.task])
    kwargs: dict = {"dtype": DTYPES[precision], "trust_remote_code": config.trust_remote_code}
    if classify and label_names:
        kwargs["num_labels"] = len(label_names)
        kwargs["id2label"] = dict(enumerate(label_names))
        kwargs["label2id"] = {name: index for index, name in enumerate(label_names)}
    elif config.num_labels is not None:
        kwargs["num_labels"] = config.num_labels
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    return auto, kwargs


def build_skeleton(
    path: Path,
    config: ModelConfig,
    precision: str,
    label_names: list[str] | None = None,
    pad_token_id: int | None = None,
):
    """The model of ``path`` with every parameter on the meta device (no weights read, no memory used).

    The same architecture, dtype and labels as :func:`load_model`; buffers are on the meta
    device too (see :mod:`kubetune.trainer.sharded_loading` for how they are filled).

    Raises:
        ModelError: missing files, an unknown architecture, or a ``.gguf`` model (its weights
            are dequantized on load, so it is only loaded whole).
    """
    import transformers

    location, extra = pretrained_location(path)
    if extra:
        raise ModelError(f"{path}: a .gguf model cannot be loaded shard by shard (distributed 'fsdp'); use 'ddp'")
    auto, kwargs = _load_arguments(config, precision, label_names)
    model_kwargs = {key: kwargs.pop(key) for key in ("dtype", "attn_implementation") if key in kwargs}
    try:
        hf_config = transformers.AutoConfig.from_pretrained(location, **kwargs)
        with torch.device("meta"):
            model = auto.from_config(hf_config, trust_remote_code=config.trust_remote_code, **model_kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"{path}: cannot load model: {str(err).splitlines()[0]}") from None
    if config.task != "causal-lm" and pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model


def check_target_modules(path: Path, config: LLMConfig) -> None:
    """Refuse LoRA ``target_modules`` the model does not have, reading module names on the meta
    device (from the model's config; no weights are loaded).

    Raises:
        ConfigError: naming the missing modules and the model's linear layers.
        ModelError: the model's config cannot be read.
    """
    lora = getattr(config.method_config, "lora", None)
    if lora is None or lora.target_modules is None or lora.target_modules == "all-linear":
        return  # None: PEFT picks the architecture's default modules
    targets = lora.target_modules
    import transformers

    remote = config.model.trust_remote_code
    location = _pretrained_args(path, remote)
    auto = getattr(transformers, AUTO_CLASSES[config.model.task])
    try:
        model_config = transformers.AutoConfig.from_pretrained(location, trust_remote_code=remote)
        with torch.device("meta"):
            model = auto.from_config(model_config, trust_remote_code=remote)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"{path}: cannot read the model's config: {str(err).splitlines()[0]}") from None
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(name == t or name.endswith(f".{t}") for name in names)]
    if missing:
        linear = sorted(
            {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
        )
        raise ConfigError(
            f"trainer.lora.target_modules: {', '.join(map(repr, missing))} not in the model {path} "
            f"(its linear layers: {', '.join(linear)})"
        )


def prepare_for_training(model, config: LLMConfig):
    """The k-bit training preparation of PEFT (QLoRA), then gradient checkpointing.

    Checkpointing comes second and is kubetune's own, so ``gradient_checkpointing_fraction``
    holds for QLoRA too (PEFT's preparation would checkpoint every layer).
    """
    if method_support(config).quantized_base:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if config.training.gradient_checkpointing:
        checkpoint_layers(model, config.training.gradient_checkpointing_fraction)
        model.config.use_cache = False
    return model


def apply_method(model, config: LLMConfig, model_path: Path | None = None):
    """Prepare ``model`` for the fine-tuning method: all weights trainable, or a PEFT adapter.

    ``model_path`` is where the tokenizer lives (prompt tuning initialised from text reads it).

    Raises:
        ConfigError: the PEFT method or its options do not fit this model (e.g. target
            modules it does not have).
    """
    if not trains_adapter(config):
        return model
    from peft import get_peft_model

    peft_config = build_peft_config(config, model_path)
    try:
        return get_peft_model(model, peft_config)
    except ValueError as err:
        raise ConfigError(f"method {config.method!r}: {str(err).splitlines()[0]}") from None


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
