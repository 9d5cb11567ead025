"""What each fine-tuning method needs from the trainer and what it exports: one row per method.

The spec picks the method's typed config (``LLMConfig.method_config``, one class per method);
:data:`METHODS` says, per method, how to build its PEFT config, whether it loads a 4-bit base,
whether the fused LoRA kernels apply and whether its adapter merges into the base weights.
Nothing here imports torch or peft at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from kubetune.errors import ConfigError
from kubetune.spec.trainer import LLMConfig, LoraMethod, PeftMethod, PrefixMethod, PromptMethod

#: The PEFT task type of each model task.
PEFT_TASK_TYPES = {"causal-lm": "CAUSAL_LM", "sequence-classification": "SEQ_CLS", "token-classification": "TOKEN_CLS"}
#: PEFT types (``method: peft``) whose adapters can be merged into the base weights.
MERGEABLE_PEFT_TYPES = ("ia3", "loha", "lokr", "adalora", "boft", "oft", "vera", "fourierft")


def _lora(method: LoraMethod, task: Any, model_path: Path | None, use_dora: bool = False):
    import peft

    lora = method.lora
    return peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        use_rslora=lora.use_rslora,
        use_dora=use_dora,
        task_type=task,
    )


def _prefix(method: PrefixMethod, task: Any, model_path: Path | None):
    import peft

    virtual = method.prompt_learning
    return peft.PrefixTuningConfig(
        task_type=task, num_virtual_tokens=virtual.num_virtual_tokens, prefix_projection=virtual.prefix_projection
    )


def _prompt(method: PromptMethod, task: Any, model_path: Path | None):
    import peft

    virtual = method.prompt_learning
    from_text = virtual.init_text is not None
    if from_text and model_path is None:
        raise ConfigError("prompt_learning.init_text needs the model's tokenizer folder")
    return peft.PromptTuningConfig(
        task_type=task,
        num_virtual_tokens=virtual.num_virtual_tokens,
        prompt_tuning_init=peft.PromptTuningInit.TEXT if from_text else peft.PromptTuningInit.RANDOM,
        prompt_tuning_init_text=virtual.init_text,
        tokenizer_name_or_path=str(model_path) if from_text else None,
    )


def _pass_through(method: PeftMethod, task: Any, model_path: Path | None):
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    by_name = {str(getattr(key, "value", key)).lower(): cls for key, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    config_cls = by_name.get(method.peft.type.lower())
    if config_cls is None:
        raise ConfigError(f"peft.type: unknown PEFT method {method.peft.type!r}; known: {', '.join(sorted(by_name))}")
    try:
        return config_cls(task_type=task, **method.peft.options())
    except (TypeError, ValueError) as err:
        raise ConfigError(f"peft: invalid options for {method.peft.type!r}: {str(err).splitlines()[0]}") from None


@dataclass(frozen=True)
class MethodSupport:
    """One method's row.

    Attributes:
        peft_config: builds the PEFT config from the method's typed config, the PEFT task type
            and the model folder; None when every weight trains (``full``).
        quantized_base: the base loads as 4-bit NF4 (needs a CUDA GPU and bitsandbytes); the
            adapter is always saved, and ``merged/`` folds it into a full-precision reload.
        lora_kernels: ``training.fused_lora`` applies.
        mergeable: the adapter folds into the base weights, so ``merged/`` can be exported.
    """

    peft_config: Callable[[Any, Any, Path | None], Any] | None
    quantized_base: bool = False
    lora_kernels: bool = False
    mergeable: bool = True


METHODS: dict[str, MethodSupport] = {
    "full": MethodSupport(None),
    "lora": MethodSupport(_lora, lora_kernels=True),
    "qlora": MethodSupport(_lora, quantized_base=True, lora_kernels=True),
    "dora": MethodSupport(partial(_lora, use_dora=True)),
    "prefix": MethodSupport(_prefix, mergeable=False),
    "prompt": MethodSupport(_prompt, mergeable=False),
    "peft": MethodSupport(_pass_through, mergeable=False),  # per type: MERGEABLE_PEFT_TYPES
}


def method_support(config: LLMConfig) -> MethodSupport:
    """The row of ``config.method``."""
    return METHODS[config.method]


def trains_adapter(config: LLMConfig) -> bool:
    """Whether the method trains a PEFT adapter (every method but ``full``)."""
    return method_support(config).peft_config is not None


def is_mergeable(config: LLMConfig) -> bool:
    """Whether the trained adapter can be merged into the base weights for the ``merged/`` export."""
    if config.peft is not None:
        return config.peft.type.lower() in MERGEABLE_PEFT_TYPES
    return method_support(config).mergeable


def build_peft_config(config: LLMConfig, model_path: Path | None):
    """The PEFT config object of an adapter method (see :func:`trains_adapter`).

    Raises:
        ConfigError: an unknown PEFT type, options it refuses, or prompt init text without a tokenizer.
    """
    import peft

    build = method_support(config).peft_config
    assert build is not None, f"method {config.method!r} trains no adapter"
    task = peft.TaskType[PEFT_TASK_TYPES[config.model.task]]
    return build(config.method_config, task, model_path)
