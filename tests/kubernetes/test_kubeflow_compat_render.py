"""The Kubeflow-shaped calls and the native SDK calls they stand for create the same TrainJob.

Both go through the real Kubernetes backend against the loopback API server; the TrainJobs it
receives must be equal apart from their names.
"""

from __future__ import annotations

import copy

import peft
import pytest
import transformers
from apiserver import serve_api
from test_backend_api import NS, RUNTIME, RUNTIMES, TRAINJOBS, make_backend

from kubetune.client import BuiltinTrainer, Initializer, LLMConfig, Name, TrainerClient
from kubetune.compat import kubeflow
from kubetune.errors import ConfigError
from kubetune.runtimes import get_runtime
from kubetune.spec import DatasetInitializer, ModelInitializer


@pytest.fixture
def backend():
    with serve_api() as (url, state):
        state.put(RUNTIMES, copy.deepcopy(get_runtime(RUNTIME).manifest))
        yield make_backend(url, default_runtime=RUNTIME), state


def created_spec(state, name: str) -> dict:
    """The spec of the TrainJob the backend created under ``name``."""
    (trainjob,) = [obj for obj in state.objects[TRAINJOBS].values() if obj["metadata"]["name"] == name]
    assert trainjob["metadata"]["namespace"] == NS
    return trainjob["spec"]


def docs_training_arguments() -> transformers.TrainingArguments:
    return transformers.TrainingArguments(
        output_dir="test_trainer", save_strategy="no", eval_strategy="no", do_eval=False, disable_tqdm=True
    )


def docs_lora() -> peft.LoraConfig:
    return peft.LoraConfig(r=8, lora_alpha=8, lora_dropout=0.1, bias="none")


def test_training_operator_train_renders_the_trainjob_of_the_native_call(backend):
    k8s, state = backend
    kubeflow.TrainingClient(backend=k8s).train(
        name="fine-tune-bert",
        model_provider_parameters=kubeflow.HuggingFaceModelParams(
            model_uri="hf://google-bert/bert-base-cased",
            transformer_type=transformers.AutoModelForSequenceClassification,
        ),
        dataset_provider_parameters=kubeflow.HuggingFaceDatasetParams(repo_id="yelp_review_full", split="train[:3000]"),
        trainer_parameters=kubeflow.HuggingFaceTrainerParams(
            training_parameters=docs_training_arguments(), lora_config=docs_lora()
        ),
        num_workers=4,
        num_procs_per_worker=2,
        resources_per_worker={"gpu": 2, "cpu": 5, "memory": "10G"},
    )
    TrainerClient(k8s).train(
        initializer=Initializer(
            model="hf://google-bert/bert-base-cased", dataset="hf://yelp_review_full?split=train[:3000]"
        ),
        trainer=BuiltinTrainer(
            config=LLMConfig(
                model={"task": "sequence-classification"},
                dataset={"format": "classification"},
                lora=docs_lora(),
                training=docs_training_arguments(),
            ),
            num_nodes=4,
            procs_per_node=2,
            resources_per_node={"nvidia.com/gpu": 2, "cpu": 5, "memory": "10G"},
        ),
        options=[Name("native-bert")],
    )
    compat, native = created_spec(state, "fine-tune-bert"), created_spec(state, "native-bert")
    assert compat == native
    assert compat["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 2
    assert compat["initializer"]["dataset"] == {"storageUri": "hf://yelp_review_full"}
    assert compat["trainer"]["llmConfig"]["dataset"]["split"] == "train[:3000]"
    assert compat["trainer"]["llmConfig"]["lora"]["target_modules"] is None  # PEFT's default modules, as Kubeflow


def test_trainer_v2_shapes_render_the_trainjob_of_the_native_call(backend):
    k8s, state = backend
    kubeflow.TrainerClient(k8s).train(
        runtime=RUNTIME,
        initializer=kubeflow.Initializer(
            model=kubeflow.HuggingFaceModelInitializer(storage_uri="hf://HuggingFaceTB/SmolLM2-135M-Instruct"),
            dataset=kubeflow.HuggingFaceDatasetInitializer(storage_uri="hf://tatsu-lab/alpaca"),
        ),
        trainer=kubeflow.BuiltinTrainer(
            config=kubeflow.TorchTuneConfig(
                dtype=kubeflow.DataType.BF16,
                epochs=1,
                batch_size=4,
                peft_config=kubeflow.LoraConfig(lora_rank=8, lora_alpha=16, apply_lora_to_mlp=True),
                dataset_preprocess_config=kubeflow.TorchTuneInstructDataset(split="train[:1000]"),
                resources_per_node={"gpu": 1},
            )
        ),
        options=[Name("kubeflow-v2")],
    )
    TrainerClient(k8s).train(
        runtime=RUNTIME,
        initializer=Initializer(
            model=ModelInitializer(storage_uri="hf://HuggingFaceTB/SmolLM2-135M-Instruct"),
            dataset=DatasetInitializer(storage_uri="hf://tatsu-lab/alpaca"),
        ),
        trainer=BuiltinTrainer(
            config=LLMConfig(
                method="lora",
                lora={
                    "r": 8,
                    "alpha": 16,
                    "target_modules": ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                },
                training={"precision": "bf16", "epochs": 1, "batch_size": 4},
                dataset={
                    "split": "train[:1000]",
                    "format": "completion",
                    "column_map": {"prompt": "input", "completion": "output"},
                },
            ),
            resources_per_node={"gpu": 1},
        ),
        options=[Name("native-v2")],
    )
    assert created_spec(state, "kubeflow-v2") == created_spec(state, "native-v2")


def test_a_namespace_other_than_the_backends_is_refused(backend):
    k8s, _ = backend
    with pytest.raises(ConfigError, match=rf"namespace='team-b': this client works in namespace '{NS}'"):
        kubeflow.TrainingClient(backend=k8s).delete_job("fine-tune-bert", namespace="team-b")
