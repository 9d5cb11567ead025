"""Hugging Face objects as kubetune settings: ``transformers.TrainingArguments`` and PEFT configs.

Users coming from the Hugging Face ``Trainer`` (or from Kubeflow, which passes these objects
through) hold a ``TrainingArguments`` and a ``peft.LoraConfig``. The LLM config accepts them in
place of its ``training`` and ``lora`` / ``peft`` sections; this module turns them into plain
kubetune fields by one rule per field (the tables below, rendered in docs/kubeflow.md):

- ``honoured``: mapped to the kubetune field that does the same thing;
- ``approximated``: mapped to the closest kubetune behaviour (the rule says how it differs);
- ``ignored``: has no effect on the trained weights (logging, evaluation-only, loader speed);
- ``refused``: changes the result in a way kubetune does not implement. Accepted at its
  default value; any other value raises a one-line :class:`~kubetune.errors.ConfigError`
  naming the field and the kubetune way. A field no table lists is refused the same way, so a
  field added by a newer transformers or peft is never silently dropped.

The objects are recognised by class name and module, and read as dataclasses: nothing here
imports torch, transformers or peft.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Literal

from kubetune.errors import ConfigError

RuleKind = Literal["honoured", "approximated", "ignored", "refused"]
Convert = Callable[[Any, Any], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class FieldRule:
    """How one field of a foreign config maps onto kubetune.

    Attributes:
        kind: honoured, approximated, ignored or refused.
        how: the kubetune field (honoured), how kubetune differs (approximated), why the weights do
            not change (ignored), or the kubetune way to get the effect (refused).
        convert: ``(value, whole object) -> {dotted kubetune field: value}`` for honoured and approximated fields.
    """

    kind: RuleKind
    how: str
    convert: Convert | None = None


def _field(target: str, transform: Callable[[Any], Any] = lambda value: value) -> Convert:
    return lambda value, _obj: {target: transform(plain(value))}


def honoured(target: str, transform: Callable[[Any], Any] = lambda value: value, how: str | None = None) -> FieldRule:
    """A field that sets ``target`` (a dotted kubetune field) to its (transformed) value."""
    return FieldRule("honoured", how or f"`{target}`", _field(target, transform))


def approximated(how: str, convert: Convert) -> FieldRule:
    """A field mapped to the closest kubetune behaviour, ``how`` saying how it differs."""
    return FieldRule("approximated", how, convert)


def ignored(why: str) -> FieldRule:
    """A field without effect on the trained weights."""
    return FieldRule("ignored", why)


def refused(way: str) -> FieldRule:
    """A field accepted only at its default; ``way`` is the kubetune way to get its effect."""
    return FieldRule("refused", way)


UNLISTED = refused("no kubetune equivalent; leave it at its default")


def plain(value: Any) -> Any:
    """Enums as their values, sets as sorted lists: what a job spec can hold."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(plain(item) for item in value)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def refuse(label: str, name: str, value: Any, way: str) -> ConfigError:
    """The one-line error for a field kubetune does not implement."""
    return ConfigError(f"{label}.{name}={plain(value)!r} is not supported: {way}")


def _defaults(obj: Any) -> Any:
    try:
        return type(obj)()
    except Exception:  # a config class that needs arguments: compare with the declared defaults
        values = {}
        for field in dataclasses.fields(obj):
            if field.default is not dataclasses.MISSING:
                values[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                values[field.name] = field.default_factory()
        return type("Defaults", (), values)()


def apply_rules(obj: Any, rules: Mapping[str, FieldRule], label: str) -> dict[str, Any]:
    """Every field of the dataclass ``obj`` through its rule: the dotted kubetune fields it sets.

    Raises:
        ConfigError: a refused (or unlisted) field is not at its default (one line naming it).
    """
    defaults = _defaults(obj)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        if not field.init:
            continue
        rule = rules.get(field.name, UNLISTED)
        value = getattr(obj, field.name)
        if rule.kind == "refused":
            if plain(value) != plain(getattr(defaults, field.name, None)):
                raise refuse(label, field.name, value, rule.how)
        elif rule.convert is not None:
            fields.update(rule.convert(value, obj))
    return fields


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"training.seed": 1}`` as ``{"training": {"seed": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _class_is(obj: Any, module_prefix: str, name: str | None = None) -> bool:
    cls = type(obj)
    return any(
        klass.__module__.split(".")[0] == module_prefix and (name is None or klass.__name__ == name)
        for klass in cls.__mro__
    )


def is_training_arguments(obj: Any) -> bool:
    """Whether ``obj`` is a ``transformers.TrainingArguments`` (or a subclass such as ``Seq2SeqTrainingArguments``)."""
    return dataclasses.is_dataclass(obj) and _class_is(obj, "transformers", "TrainingArguments")


def is_peft_config(obj: Any) -> bool:
    """Whether ``obj`` is a PEFT method config (``peft.LoraConfig``, ``peft.IA3Config``...)."""
    return dataclasses.is_dataclass(obj) and _class_is(obj, "peft") and hasattr(obj, "peft_type")


# ----------------------------------------------------------------------------------------------
# transformers.TrainingArguments -> training.*


def _schedule(value: Any, _obj: Any) -> dict[str, Any]:
    name = plain(value)
    mapped = {"linear": "linear", "cosine": "cosine", "constant": "constant", "constant_with_warmup": "constant"}
    if name not in mapped:
        raise refuse("TrainingArguments", "lr_scheduler_type", name, "kubetune schedules linear, cosine or constant")
    return {"training.lr_scheduler": mapped[name]}


def _warmup(value: Any, _obj: Any) -> dict[str, Any]:
    if 0 < value < 1:
        raise refuse("TrainingArguments", "warmup_steps", value, "a warmup ratio needs the step count; give steps")
    return {"training.warmup_steps": int(value)}


def _optimizer(value: Any, _obj: Any) -> dict[str, Any]:
    if plain(value) not in ("adamw_torch", "adamw_torch_fused"):
        raise refuse("TrainingArguments", "optim", value, "kubetune trains with AdamW ('adamw_torch')")
    return {}


def _max_steps(value: Any, _obj: Any) -> dict[str, Any]:
    return {"training.max_steps": int(value)} if value and value > 0 else {}


def _grad_norm(value: Any, _obj: Any) -> dict[str, Any]:
    return {"training.max_grad_norm": float(value) if value else None}


def _precision(value: Any, _obj: Any) -> dict[str, Any]:
    return {"training.precision": "bf16" if value else "fp32"}


def _checkpointing(value: Any, obj: Any) -> dict[str, Any]:
    return {"training.gradient_checkpointing": bool(value or getattr(obj, "activation_checkpointing", False))}


def _steps(name: str, value: Any) -> int:
    if not isinstance(value, int | float) or value < 1:
        raise refuse("TrainingArguments", name, value, "give a whole number of steps (kubetune takes no ratios)")
    return int(value)


def _logging(value: Any, obj: Any) -> dict[str, Any]:
    default = next(f.default for f in dataclasses.fields(obj) if f.name == "logging_steps")
    return {} if value == default else {"training.log_every": _steps("logging_steps", value)}


def _evaluation(value: Any, obj: Any) -> dict[str, Any]:
    strategy = plain(value)
    if strategy == "steps":
        return {"training.eval_every": _steps("eval_steps", obj.eval_steps or obj.logging_steps)}
    return {}


def _saving(value: Any, obj: Any) -> dict[str, Any]:
    strategy = plain(value)
    if strategy == "best":
        raise refuse("TrainingArguments", "save_strategy", strategy, "kubetune keeps the newest checkpoints")
    if strategy == "steps":
        return {"training.checkpoint_every": _steps("save_steps", obj.save_steps)}
    return {}


def _keep(value: Any, _obj: Any) -> dict[str, Any]:
    return {} if value is None else {"training.keep_checkpoints": max(1, int(value))}


_LOGGING = ignored("logging and tracking: kubetune writes metrics.jsonl (and a TensorBoard export)")
_EVAL_ONLY = ignored("evaluation only; kubetune reports the eval loss on dataset.eval_fraction")
_LOADER = ignored("data-loading speed only")
_DDP = ignored("process-group and communication settings; kubetune's DDP/FSDP set their own")
_SAVE_ONLY = ignored("how checkpoints are written, not what is trained")
_HUB = ignored("only used with push_to_hub, which is refused")

#: One rule per ``transformers.TrainingArguments`` field.
TRAINING_ARGUMENTS_RULES: dict[str, FieldRule] = {
    "output_dir": ignored("kubetune writes to the run directory (RunDirectory option; output_dir in a job file)"),
    "per_device_train_batch_size": honoured("training.batch_size"),
    "num_train_epochs": honoured("training.epochs", float),
    "max_steps": FieldRule("honoured", "`training.max_steps` (-1: epochs decide)", _max_steps),
    "learning_rate": honoured("training.learning_rate", float),
    "lr_scheduler_type": FieldRule(
        "honoured", "`training.lr_scheduler` (linear, cosine, constant; constant_with_warmup is constant)", _schedule
    ),
    "lr_scheduler_kwargs": refused("kubetune's schedules take no extra arguments"),
    "warmup_steps": approximated(
        "`training.warmup_steps`: kubetune's ramp reaches the full rate at step N, one step sooner; a ratio (< 1) is "
        "refused",
        _warmup,
    ),
    "optim": FieldRule("honoured", "AdamW (adamw_torch, adamw_torch_fused: fused on GPU); others refused", _optimizer),
    "optim_args": refused("kubetune's AdamW takes no extra arguments"),
    "weight_decay": honoured("training.weight_decay", float, "`training.weight_decay` (not on biases and norms)"),
    "adam_beta1": refused("kubetune's AdamW uses betas (0.9, 0.999)"),
    "adam_beta2": refused("kubetune's AdamW uses betas (0.9, 0.999)"),
    "adam_epsilon": refused("kubetune's AdamW uses eps 1e-8"),
    "optim_target_modules": refused("kubetune optimises every trainable parameter with AdamW"),
    "gradient_accumulation_steps": honoured("training.gradient_accumulation_steps"),
    "average_tokens_across_devices": refused(
        "kubetune always divides the summed loss by the targets of the whole step, across every rank"
    ),
    "max_grad_norm": FieldRule("honoured", "`training.max_grad_norm` (0: no clipping)", _grad_norm),
    "label_smoothing_factor": refused("kubetune trains on plain cross-entropy"),
    "bf16": FieldRule("honoured", "`training.precision: bf16` (False: fp32)", _precision),
    "fp16": refused("kubetune trains in fp32 or bf16: set bf16=True"),
    "bf16_full_eval": _EVAL_ONLY,
    "fp16_full_eval": _EVAL_ONLY,
    "tf32": refused("kubetune leaves the TF32 matmul setting at torch's default"),
    "activation_checkpointing": honoured(
        "training.gradient_checkpointing", bool, "`training.gradient_checkpointing` (same as gradient_checkpointing)"
    ),
    "activation_checkpointing_kwargs": ignored("recomputation details; the gradients are the same"),
    "gradient_checkpointing": FieldRule("honoured", "`training.gradient_checkpointing`", _checkpointing),
    "gradient_checkpointing_kwargs": ignored("recomputation details; the gradients are the same"),
    "torch_compile": approximated(
        "`training.compile`: kubetune compiles each decoder layer", _field("training.compile", bool)
    ),
    "torch_compile_backend": refused("kubetune compiles with the default inductor backend (training.compile)"),
    "torch_compile_mode": refused("kubetune compiles with the default mode (training.compile)"),
    "use_liger_kernel": refused("use training.chunked_loss (fused LM head + loss) and training.fused_lora"),
    "liger_kernel_config": refused("use training.chunked_loss (fused LM head + loss) and training.fused_lora"),
    "use_cache": ignored("the generation cache is not used in training"),
    "neftune_noise_alpha": refused("kubetune adds no embedding noise"),
    "torch_empty_cache_steps": ignored("memory housekeeping only"),
    "auto_find_batch_size": refused("kubetune does not retry with smaller batches; set the batch size"),
    "logging_strategy": _LOGGING,
    "logging_steps": approximated(
        "`training.log_every` when changed from its default 500 (kubetune logs every step by default, so progress "
        "shows)",
        _logging,
    ),
    "logging_first_step": _LOGGING,
    "log_on_each_node": _LOGGING,
    "logging_nan_inf_filter": _LOGGING,
    "include_num_input_tokens_seen": _LOGGING,
    "log_level": _LOGGING,
    "log_level_replica": _LOGGING,
    "disable_tqdm": _LOGGING,
    "report_to": _LOGGING,
    "run_name": _LOGGING,
    "project": _LOGGING,
    "trackio_space_id": _LOGGING,
    "trackio_bucket_id": _LOGGING,
    "trackio_static_space_id": _LOGGING,
    "eval_strategy": approximated(
        "'steps': `training.eval_every` = eval_steps (else logging_steps); 'epoch': the eval loss at the end only; "
        "evaluation needs `dataset.eval_fraction`",
        _evaluation,
    ),
    "eval_steps": ignored("read with eval_strategy='steps'; evaluation does not change the weights"),
    "eval_delay": _EVAL_ONLY,
    "per_device_eval_batch_size": _EVAL_ONLY,
    "prediction_loss_only": _EVAL_ONLY,
    "eval_on_start": _EVAL_ONLY,
    "eval_do_concat_batches": _EVAL_ONLY,
    "eval_use_gather_object": _EVAL_ONLY,
    "eval_accumulation_steps": _EVAL_ONLY,
    "include_for_metrics": _EVAL_ONLY,
    "batch_eval_metrics": _EVAL_ONLY,
    "save_only_model": _SAVE_ONLY,
    "save_strategy": approximated(
        "'steps': `training.checkpoint_every` = save_steps; 'epoch' and 'no': a checkpoint-free run (kubetune "
        "exports at the end); 'best' refused",
        _saving,
    ),
    "save_steps": ignored("read with save_strategy='steps'"),
    "save_on_each_node": _SAVE_ONLY,
    "save_total_limit": FieldRule("honoured", "`training.keep_checkpoints` (None: kubetune's default 2)", _keep),
    "enable_jit_checkpoint": _SAVE_ONLY,
    "push_to_hub": refused("kubetune exports adapter/ and merged/ into the run directory; upload them from there"),
    "hub_token": _HUB,
    "hub_private_repo": _HUB,
    "hub_model_id": _HUB,
    "hub_strategy": _HUB,
    "hub_always_push": _HUB,
    "hub_revision": _HUB,
    "load_best_model_at_end": refused("kubetune exports the final weights; keep checkpoints (save_strategy='steps')"),
    "metric_for_best_model": ignored("only used with load_best_model_at_end, which is refused"),
    "greater_is_better": ignored("only used with load_best_model_at_end, which is refused"),
    "ignore_data_skip": refused("kubetune resumes at the exact batch it stopped at"),
    "restore_callback_states_from_checkpoint": ignored("kubetune has no Trainer callbacks"),
    "full_determinism": ignored("kubetune seeds every generator from training.seed"),
    "seed": honoured("training.seed"),
    "data_seed": refused("kubetune shuffles with training.seed"),
    "use_cpu": ignored("devices come from the job's resources (gpu: 0 trains on CPU)"),
    "accelerator_config": refused("kubetune does not use accelerate"),
    "parallelism_config": refused("kubetune parallelises with DDP or FSDP2 (training.distributed)"),
    "dataloader_drop_last": refused("kubetune trains on every example"),
    "dataloader_num_workers": _LOADER,
    "dataloader_pin_memory": _LOADER,
    "dataloader_persistent_workers": _LOADER,
    "dataloader_prefetch_factor": _LOADER,
    "dataloader_multiprocessing_context": _LOADER,
    "dataloader_in_order": _LOADER,
    "remove_unused_columns": ignored("kubetune reads the columns its dataset format names"),
    "label_names": refused("kubetune reads labels from the dataset format's columns (dataset.column_map)"),
    "train_sampling_strategy": refused("kubetune shuffles randomly with training.seed"),
    "length_column_name": refused("kubetune does not group by length"),
    "ddp_find_unused_parameters": _DDP,
    "ddp_bucket_cap_mb": _DDP,
    "ddp_broadcast_buffers": _DDP,
    "ddp_static_graph": _DDP,
    "ddp_backend": _DDP,
    "ddp_timeout": _DDP,
    "fsdp": refused("set training.distributed: fsdp (FSDP2, full fine-tunes)"),
    "fsdp_config": refused("set training.distributed: fsdp (FSDP2, full fine-tunes)"),
    "deepspeed": refused("kubetune shards with FSDP2: training.distributed: fsdp"),
    "debug": _LOGGING,
    "skip_memory_metrics": _LOGGING,
    "do_train": ignored("read by training scripts, not by the Trainer"),
    "do_eval": ignored("read by training scripts, not by the Trainer"),
    "do_predict": ignored("read by training scripts, not by the Trainer"),
    "resume_from_checkpoint": refused("kubetune resumes from the newest checkpoint itself (training.resume: auto)"),
    "local_rank": ignored("set by the launcher"),
}


def training_fields(args: Any) -> dict[str, Any]:
    """The ``training`` section for a ``transformers.TrainingArguments`` (every rule applied).

    Use it to add kubetune-only settings: ``TrainingConfig(**training_fields(args), max_seq_len=256)``.

    Raises:
        ConfigError: a refused field is set (one line naming it and the kubetune way).
    """
    return nest(apply_rules(args, TRAINING_ARGUMENTS_RULES, "TrainingArguments")).get("training", {})


# ----------------------------------------------------------------------------------------------
# peft configs -> method, lora.* / peft.*

#: PEFT task types and the kubetune model task each means.
PEFT_TASKS = {"CAUSAL_LM": "causal-lm", "SEQ_CLS": "sequence-classification", "TOKEN_CLS": "token-classification"}
#: The heads PEFT trains in full for a sequence or token classifier (as kubetune does).
CLASSIFIER_HEADS = {"classifier", "score"}


def _target_modules(value: Any, _obj: Any) -> dict[str, Any]:
    if isinstance(value, str) and value != "all-linear":
        raise refuse("peft.LoraConfig", "target_modules", value, "give module names as a list (no regular expression)")
    return {"lora.target_modules": plain(value)}


def _task(value: Any, _obj: Any) -> dict[str, Any]:
    task = plain(value)
    if task is None:
        return {}
    if task not in PEFT_TASKS:
        raise refuse(
            "peft config", "task_type", task, "kubetune trains CAUSAL_LM, SEQ_CLS and TOKEN_CLS models (model.task)"
        )
    return {"model.task": PEFT_TASKS[task]}


def _modules_to_save(value: Any, obj: Any) -> dict[str, Any]:
    modules = set(plain(value) or [])
    classifier = plain(getattr(obj, "task_type", None)) in (None, "SEQ_CLS", "TOKEN_CLS")
    if modules - CLASSIFIER_HEADS or (modules and not classifier):
        raise refuse(
            "peft.LoraConfig",
            "modules_to_save",
            value,
            "kubetune trains the classification head of a classifier model and nothing else in full; "
            "use method 'full' to train every weight",
        )
    return {}


_INIT = refused("kubetune initialises LoRA as PEFT's default (init_lora_weights=True)")
_VARIANT = refused(
    "kubetune trains plain LoRA, rsLoRA (lora.use_rslora) or DoRA (method dora); for other PEFT methods "
    "pass their config as peft="
)
_PEFT_BOOKKEEPING = ignored("PEFT bookkeeping, set when the adapter is saved or loaded")

#: One rule per ``peft.LoraConfig`` field.
LORA_RULES: dict[str, FieldRule] = {
    "task_type": FieldRule(
        "honoured",
        "`model.task` (CAUSAL_LM: causal-lm, SEQ_CLS: sequence-classification, TOKEN_CLS: token-classification)",
        _task,
    ),
    "peft_type": ignored("always LORA for this class"),
    "auto_mapping": _PEFT_BOOKKEEPING,
    "peft_version": _PEFT_BOOKKEEPING,
    "base_model_name_or_path": _PEFT_BOOKKEEPING,
    "revision": _PEFT_BOOKKEEPING,
    "inference_mode": ignored("kubetune trains the adapter (inference_mode False)"),
    "r": honoured("lora.r"),
    "target_modules": FieldRule(
        "honoured", "`lora.target_modules` (None: PEFT's default modules for the architecture)", _target_modules
    ),
    "exclude_modules": refused("list the modules to adapt in target_modules"),
    "lora_alpha": honoured("lora.alpha", float),
    "lora_dropout": honoured("lora.dropout", float),
    "fan_in_fan_out": refused("kubetune adapts nn.Linear layers (Conv1D-style GPT-2 weights are not supported)"),
    "bias": refused("kubetune trains no bias terms with LoRA; use method 'full'"),
    "use_rslora": honoured("lora.use_rslora"),
    "modules_to_save": approximated(
        "the classification head ('classifier', 'score') of a classifier model trains in full anyway; "
        "other modules refused",
        _modules_to_save,
    ),
    "init_lora_weights": refused("kubetune initialises LoRA as PEFT's default (init_lora_weights=True)"),
    "layers_to_transform": refused("kubetune adapts target_modules in every layer"),
    "layers_pattern": refused("kubetune adapts target_modules in every layer"),
    "rank_pattern": refused("kubetune uses one rank (lora.r) for every module"),
    "alpha_pattern": refused("kubetune uses one alpha (lora.alpha) for every module"),
    "megatron_config": refused("kubetune does not train Megatron models"),
    "megatron_core": ignored("only used with megatron_config, which is refused"),
    "use_dora": honoured("method", lambda on: "dora" if on else None, "`method: dora` (False: lora)"),
    "runtime_config": ignored("inference-time offloading only"),
    "trainable_token_indices": refused("kubetune trains no embedding rows beside the adapter; use method 'full'"),
    "loftq_config": _INIT,
    "eva_config": _INIT,
    "corda_config": _INIT,
    "lora_ga_config": _INIT,
    "velora_config": _VARIANT,
    "alora_invocation_tokens": _VARIANT,
    "use_qalora": _VARIANT,
    "qalora_group_size": ignored("only used with use_qalora, which is refused"),
    "monteclora_config": _VARIANT,
    "layer_replication": refused("kubetune adapts the model's layers as they are"),
    "lora_bias": refused("kubetune's LoRA has no bias term; use method 'full'"),
    "target_parameters": refused("kubetune adapts modules (target_modules), not parameters"),
    "use_bdlora": _VARIANT,
    "arrow_config": _VARIANT,
    "kasa_config": _VARIANT,
    "ensure_weight_tying": refused("kubetune adapts tied weights as PEFT's default does"),
}


def peft_fields(config: Any) -> dict[str, Any]:
    """``method`` and its settings (and ``model.task`` from ``task_type``) for a PEFT config object.

    A ``peft.LoraConfig`` becomes ``lora`` settings by :data:`LORA_RULES`; any other PEFT
    config (IA3, LoHa, LoKr, AdaLoRA...) becomes method ``peft`` with every field that differs
    from that class's default passed through unchanged.

    Raises:
        ConfigError: a refused field is set, or a value cannot be kept in a job spec.
    """
    peft_type = str(plain(config.peft_type)).lower()
    if peft_type == "lora" and type(config).__name__ == "LoraConfig":
        dotted = apply_rules(config, LORA_RULES, "peft.LoraConfig")
        dotted["method"] = dotted.get("method") or "lora"
        return nest(dotted)
    label = f"peft.{type(config).__name__}"
    dotted = {"method": "peft", "peft.type": peft_type}
    dotted.update(_task(getattr(config, "task_type", None), config))
    defaults = _defaults(config)
    skip = {"task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision"}
    skip.add("inference_mode")
    for field in dataclasses.fields(config):
        if not field.init or field.name in skip:
            continue
        value = plain(getattr(config, field.name))
        if value != plain(getattr(defaults, field.name, None)):
            if dataclasses.is_dataclass(value):
                raise refuse(label, field.name, value, "give this method's settings as plain values")
            dotted[f"peft.{field.name}"] = value
    return nest(dotted)


def _as_dict(section: Any) -> dict[str, Any]:
    """A section given as a dict or a pydantic model, as the fields the user set."""
    if section is None:
        return {}
    if hasattr(section, "model_dump"):
        return section.model_dump(exclude_unset=True)
    return dict(section)


def merge_hugging_face_objects(data: Mapping[str, Any]) -> dict[str, Any]:
    """An LLM config's raw fields with a ``TrainingArguments`` (``training``) and a PEFT config (``lora`` or
    ``peft``) replaced by the kubetune settings they stand for.

    Raises:
        ConfigError: a refused field is set, or the objects contradict the other fields
            (``method``, ``model.task``) or each other.
    """
    out = dict(data)
    if is_training_arguments(out.get("training")):
        out["training"] = training_fields(out["training"])
    adapters = [(key, out[key]) for key in ("lora", "peft") if is_peft_config(out.get(key))]
    if len(adapters) > 1:
        raise ConfigError("give one PEFT config object, as lora= (a LoraConfig) or peft= (any PEFT config)")
    if not adapters:
        return out
    key, config = adapters[0]
    del out[key]
    fields = peft_fields(config)
    if key == "lora" and fields["method"] == "peft":
        raise ConfigError(f"lora: got a {type(config).__name__}; pass a non-LoRA PEFT config as peft=")
    method = fields.pop("method")
    given = out.get("method")
    if given is not None and given != method and not (given == "qlora" and method == "lora"):
        raise ConfigError(f"method: {given!r} contradicts the {type(config).__name__} given (method {method!r})")
    out["method"] = given or method
    for section in ("lora", "peft"):
        if section in fields:
            out[section] = fields[section]
    task = fields.get("model", {}).get("task")
    if task is not None:
        model = _as_dict(out.get("model"))
        if model.get("task", task) != task:
            raise ConfigError(
                f"{type(config).__name__}.task_type says model.task {task!r}, but model.task is {model['task']!r}"
            )
        out["model"] = {**model, "task": task}
    return out
