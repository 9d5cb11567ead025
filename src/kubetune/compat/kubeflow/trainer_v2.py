"""Kubeflow Trainer v2's SDK shapes (``kubeflow.trainer``) on kubetune.

``TrainerClient().train(runtime=..., initializer=Initializer(...), trainer=BuiltinTrainer(config=
TorchTuneConfig(...)) or CustomTrainer(...))`` with Kubeflow's types, imported from here. The
client is kubetune's own :class:`~kubetune.client.TrainerClient`; these types are translated to
kubetune's by the rules below (rendered in docs/kubeflow.md), and kubetune's own types are
accepted too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import kubetune.client as native
from kubetune.compat.kubeflow.sources import secret, storage_uri
from kubetune.errors import ConfigError
from kubetune.spec.hf_configs import FieldRule, apply_rules, approximated, honoured, ignored, nest, plain, refused
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer, S3Options, SecretRef


class Loss(Enum):
    """Loss of the TorchTune trainer."""

    CEWithChunkedOutputLoss = "torchtune.modules.loss.CEWithChunkedOutputLoss"


class DataType(Enum):
    """Training dtype of the TorchTune trainer."""

    BF16 = "bf16"
    FP32 = "fp32"


class DataFormat(Enum):
    """Dataset file type of the TorchTune trainer."""

    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"
    ARROW = "arrow"
    TEXT = "text"
    XML = "xml"


@dataclass
class TorchTuneInstructDataset:
    """Instruction data: ``input`` and ``output`` columns (renamed by ``column_map``)."""

    source: DataFormat | None = None
    split: str | None = None
    train_on_input: bool | None = None
    new_system_prompt: str | None = None
    column_map: dict[str, str] | None = None


@dataclass
class LoraConfig:
    """TorchTune's LoRA settings (Kubeflow's ``kubeflow.trainer.LoraConfig``; not ``peft.LoraConfig``)."""

    apply_lora_to_mlp: bool | None = None
    apply_lora_to_output: bool | None = None
    lora_attn_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj", "output_proj"])
    lora_rank: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    quantize_base: bool | None = None
    use_dora: bool | None = None


@dataclass
class TorchTuneConfig:
    """Kubeflow's built-in (TorchTune) trainer settings, run by kubetune's LLM Trainer."""

    dtype: DataType | None = None
    batch_size: int | None = None
    epochs: int | None = None
    loss: Loss | None = None
    num_nodes: int | None = None
    peft_config: LoraConfig | None = None
    dataset_preprocess_config: TorchTuneInstructDataset | None = None
    resources_per_node: dict | None = None


@dataclass
class BuiltinTrainer:
    """The built-in trainer with its config."""

    config: TorchTuneConfig


@dataclass
class CustomTrainer:
    """Run ``func(**func_args)`` on every worker (Kubeflow's ``CustomTrainer``).

    ``packages_to_install`` is refused: kubetune runs the function in the job's environment
    (the local Python, or the runtime's image); ``pip_index_urls`` only serve it.
    """

    func: Callable
    func_args: dict | None = None
    packages_to_install: list[str] | None = None
    pip_index_urls: list[str] = field(default_factory=lambda: ["https://pypi.org/simple"])
    num_nodes: int | None = None
    resources_per_node: dict | None = None
    env: dict[str, str] | None = None


@dataclass
class HuggingFaceModelInitializer:
    """A model from the Hugging Face Hub (any kubetune storage URI or local path is accepted too).

    ``ignore_patterns`` None keeps kubetune's default (other weight formats are skipped when
    safetensors weights exist). ``access_token`` is a :class:`~kubetune.spec.SecretRef`.
    """

    storage_uri: str
    ignore_patterns: list[str] | None = None
    access_token: SecretRef | None = None


@dataclass
class HuggingFaceDatasetInitializer:
    """A dataset from the Hugging Face Hub; ``hf://org/name?split=train[:3000]`` also selects rows."""

    storage_uri: str
    ignore_patterns: list[str] | None = None
    access_token: SecretRef | None = None


@dataclass
class S3ModelInitializer:
    """A model under an S3 prefix; keys are :class:`~kubetune.spec.SecretRef` (``role_arn`` is refused)."""

    storage_uri: str
    ignore_patterns: list[str] | None = None
    endpoint: str | None = None
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None
    region: str | None = None
    role_arn: str | None = None


@dataclass
class S3DatasetInitializer(S3ModelInitializer):
    """A dataset under an S3 prefix (fields as :class:`S3ModelInitializer`)."""


@dataclass
class Initializer:
    """What to fetch before training."""

    dataset: HuggingFaceDatasetInitializer | S3DatasetInitializer | None = None
    model: HuggingFaceModelInitializer | S3ModelInitializer | None = None


def _source(source: Any, kind: type[ModelInitializer] | type[DatasetInitializer]) -> Any:
    """A Kubeflow initializer as kubetune's; kubetune's own specs and plain URIs pass through."""
    if source is None or isinstance(source, str | ModelInitializer | DatasetInitializer):
        return source
    label = type(source).__name__
    fields: dict[str, Any] = {"storage_uri": storage_uri(source.storage_uri, "hf")}
    if source.ignore_patterns is not None:
        fields["ignore_patterns"] = list(source.ignore_patterns)
    if isinstance(source, S3ModelInitializer):
        if source.role_arn is not None:
            raise ConfigError(
                f"{label}.role_arn is not supported: kubetune uses the AWS credential chain; give the pod an "
                "identity or pass access_key_id/secret_access_key references"
            )
        options = {
            "endpoint_url": source.endpoint,
            "region": source.region,
            "access_key_id": secret(source.access_key_id, f"{label}.access_key_id"),
            "secret_access_key": secret(source.secret_access_key, f"{label}.secret_access_key"),
        }
        fields["s3"] = S3Options(**{key: value for key, value in options.items() if value is not None})
    elif isinstance(source, HuggingFaceModelInitializer | HuggingFaceDatasetInitializer):
        fields["token"] = secret(source.access_token, f"{label}.access_token")
    else:
        raise ConfigError(f"initializer: {label} is not supported (Hugging Face and S3 initializers are)")
    return kind(**{key: value for key, value in fields.items() if value is not None})


# ----------------------------------------------------------------------------------------------
# TorchTuneConfig -> job fields (num_nodes, resources) and LLM config fields


def _lora(config: LoraConfig | None, _obj: Any) -> dict[str, Any]:
    if config is None:
        return {}
    return apply_rules(config, TORCHTUNE_LORA_RULES, "LoraConfig")


def _instruct(config: TorchTuneInstructDataset | None, _obj: Any) -> dict[str, Any]:
    if config is None:
        return {}
    dotted = apply_rules(config, TORCHTUNE_DATASET_RULES, "TorchTuneInstructDataset")
    columns = dict(config.column_map or {})
    unknown = sorted(set(columns) - {"input", "output"})
    if unknown:
        raise ConfigError(f"TorchTuneInstructDataset.column_map: keys must be 'input' and 'output' (got {unknown})")
    dotted["dataset.format"] = "completion"
    dotted["dataset.column_map"] = {
        "prompt": columns.get("input", "input"),
        "completion": columns.get("output", "output"),
    }
    return dotted


#: One rule per ``TorchTuneConfig`` field.
TORCHTUNE_RULES: dict[str, FieldRule] = {
    "dtype": honoured("training.precision"),
    "batch_size": honoured("training.batch_size"),
    "epochs": honoured("training.epochs"),
    "loss": FieldRule(
        "honoured",
        "CEWithChunkedOutputLoss: `training.chunked_loss: true` (the LM head and loss in chunks)",
        lambda value, _obj: {} if value is None else {"training.chunked_loss": True},
    ),
    "num_nodes": honoured("job.num_nodes", how="the job's `num_nodes`"),
    "peft_config": approximated("see the LoraConfig table", _lora),
    "dataset_preprocess_config": approximated("see the TorchTuneInstructDataset table", _instruct),
    "resources_per_node": honoured("job.resources", how="the job's `resources` (cpu, memory, gpu or nvidia.com/gpu)"),
}

#: TorchTune module names and the (Llama-style) Hugging Face module names kubetune adapts for them.
TORCHTUNE_MODULES = {"q_proj": ["q_proj"], "k_proj": ["k_proj"], "v_proj": ["v_proj"], "output_proj": ["o_proj"]}
MLP_MODULES = ["gate_proj", "up_proj", "down_proj"]


def _targets(_value: Any, obj: LoraConfig) -> dict[str, Any]:
    unknown = sorted(set(obj.lora_attn_modules) - set(TORCHTUNE_MODULES))
    if unknown:
        raise ConfigError(f"LoraConfig.lora_attn_modules: {unknown} are not among {sorted(TORCHTUNE_MODULES)}")
    modules = [name for module in obj.lora_attn_modules for name in TORCHTUNE_MODULES[module]]
    if obj.apply_lora_to_mlp:
        modules += MLP_MODULES
    if obj.apply_lora_to_output:
        modules.append("lm_head")
    return {"lora.target_modules": modules}


def _method(_value: Any, obj: LoraConfig) -> dict[str, Any]:
    if obj.quantize_base and obj.use_dora:
        raise ConfigError("LoraConfig: quantize_base and use_dora together are not supported; choose qlora or dora")
    return {"method": "qlora" if obj.quantize_base else "dora" if obj.use_dora else "lora"}


def _unset_or(target: str) -> Callable[[Any, Any], dict[str, Any]]:
    return lambda value, _obj: {} if value is None else {target: plain(value)}


_TARGETS = approximated(
    "`lora.target_modules`: TorchTune's q_proj, k_proj, v_proj, output_proj as the Llama-style names q_proj, k_proj, "
    "v_proj, o_proj (models with other module names need kubetune's own lora.target_modules)",
    _targets,
)
#: One rule per Kubeflow (TorchTune) ``LoraConfig`` field. Unset (None) fields take the runtime's defaults.
TORCHTUNE_LORA_RULES: dict[str, FieldRule] = {
    "apply_lora_to_mlp": approximated("adds gate_proj, up_proj, down_proj to `lora.target_modules`", _targets),
    "apply_lora_to_output": approximated("adds lm_head to `lora.target_modules`", _targets),
    "lora_attn_modules": _TARGETS,
    "lora_rank": FieldRule("honoured", "`lora.r`", _unset_or("lora.r")),
    "lora_alpha": FieldRule("honoured", "`lora.alpha`", _unset_or("lora.alpha")),
    "lora_dropout": FieldRule("honoured", "`lora.dropout`", _unset_or("lora.dropout")),
    "quantize_base": FieldRule("honoured", "`method: qlora` (4-bit NF4 base weights)", _method),
    "use_dora": FieldRule("honoured", "`method: dora`", _method),
}

#: One rule per ``TorchTuneInstructDataset`` field (the data becomes kubetune's ``completion`` format).
TORCHTUNE_DATASET_RULES: dict[str, FieldRule] = {
    "source": ignored("kubetune reads json, jsonl, csv, parquet and txt files by their suffix"),
    "split": FieldRule("honoured", "`dataset.split`", _unset_or("dataset.split")),
    "train_on_input": FieldRule("honoured", "`dataset.train_on_inputs`", _unset_or("dataset.train_on_inputs")),
    "new_system_prompt": refused("put the system prompt in the data (format 'messages' with a system turn)"),
    "column_map": approximated(
        "`dataset.column_map`: input as prompt, output as completion (format 'completion')", lambda _v, _o: {}
    ),
}


def torchtune_fields(config: TorchTuneConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(job fields, LLM config fields)`` for a ``TorchTuneConfig``.

    Raises:
        ConfigError: a refused field is set (one line naming it and the kubetune way).
    """
    dotted = apply_rules(config, TORCHTUNE_RULES, "TorchTuneConfig")
    nested = nest({key: value for key, value in dotted.items() if value is not None})
    return nested.pop("job", {}), nested


def native_trainer(trainer: Any) -> Any:
    """A Kubeflow ``BuiltinTrainer`` / ``CustomTrainer`` as kubetune's (kubetune's own pass through)."""
    if trainer is None or isinstance(trainer, native.BuiltinTrainer | native.CustomTrainer):
        return trainer
    if isinstance(trainer, BuiltinTrainer):
        if not isinstance(trainer.config, TorchTuneConfig):
            raise ConfigError(f"BuiltinTrainer.config: expected TorchTuneConfig, got {type(trainer.config).__name__}")
        job, llm = torchtune_fields(trainer.config)
        return native.BuiltinTrainer(
            config=llm, num_nodes=job.get("num_nodes"), resources_per_node=job.get("resources")
        )
    if isinstance(trainer, CustomTrainer):
        if trainer.packages_to_install:
            raise ConfigError(
                "CustomTrainer.packages_to_install is not supported: kubetune runs the function in the job's "
                "environment; install packages there (the runtime's image on Kubernetes)"
            )
        return native.CustomTrainer(
            func=trainer.func,
            func_args=trainer.func_args,
            num_nodes=trainer.num_nodes,
            resources_per_node=trainer.resources_per_node,
            env=dict(trainer.env or {}),
        )
    raise ConfigError(f"trainer: {type(trainer).__name__} is not supported (BuiltinTrainer or CustomTrainer)")


class TrainerClient(native.TrainerClient):
    """kubetune's :class:`~kubetune.client.TrainerClient`, also taking Kubeflow Trainer v2's types.

    Args:
        backend: ``"local"`` (default), ``"kubernetes"``, or a kubetune backend instance.
    """

    def train(
        self,
        runtime: Any = None,
        initializer: Any = None,
        trainer: Any = None,
        options: Iterable[native.JobOption] | None = None,
    ) -> str:
        """Start a job from Kubeflow-shaped (or kubetune) arguments; returns its name.

        ``runtime`` is a runtime name or a Runtime. Raises as :meth:`kubetune.client.TrainerClient.train`.
        """
        if initializer is not None and not isinstance(initializer, native.Initializer):
            initializer = native.Initializer(
                model=_source(initializer.model, ModelInitializer),
                dataset=_source(initializer.dataset, DatasetInitializer),
            )
        return super().train(runtime=runtime, initializer=initializer, trainer=native_trainer(trainer), options=options)

    def wait_for_job_status(
        self,
        name: str,
        status: set[str] | set[native.JobStatus] | str | native.JobStatus = native.JobStatus.COMPLETE,
        timeout: float = 600.0,
        polling_interval: float = 2.0,
    ) -> native.Job:
        """Block until the job reaches ``status`` (Kubeflow's names: Created, Running, Complete, Failed)."""
        wanted = {status} if isinstance(status, str) else set(status)
        try:
            statuses = {native.JobStatus(value) for value in wanted}
        except ValueError:
            names = ", ".join(item.value for item in native.JobStatus)
            raise ConfigError(f"status: {sorted(map(str, wanted))} are not all among {names}") from None
        return super().wait_for_job_status(name, statuses, timeout=timeout, polling_interval=polling_interval)
