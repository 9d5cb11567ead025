"""A runtime's defaults go under the job's own fields: the user wins, the runtime fills the gaps."""

from __future__ import annotations

import pytest

from kubetune.errors import ConfigError
from kubetune.runtimes import apply_runtime, get_runtime, list_runtimes
from kubetune.runtimes.defaults import resources_from_kubernetes, resources_to_kubernetes
from kubetune.spec.job import JobSpec
from kubetune.spec.trainer import DEFAULT_CHECKPOINT_EVERY

RUNTIME = "smollm2-135m-lora"  # catalog: batch 8, lr 2e-4, fp32, 1 node x 1 proc, cpu 4, 16Gi, no GPU


def resolved(fields: dict, runtime: str = RUNTIME) -> JobSpec:
    return apply_runtime(JobSpec.model_validate({"runtime": runtime, **fields}), get_runtime(runtime))


@pytest.mark.parametrize(
    ("fields", "path", "expected"),
    [
        # the runtime fills what the user left out
        ({}, "trainer.training.batch_size", 8),
        ({}, "trainer.method", "lora"),
        ({}, "num_nodes", 1),
        ({}, "resources.cpu", 4.0),
        ({}, "resources.memory", "16Gi"),
        ({}, "initializer.model.storage_uri", "hf://HuggingFaceTB/SmolLM2-135M-Instruct"),
        # the user's field wins, even when it equals the type's default (it was set)
        ({"trainer": {"training": {"batch_size": 4}}}, "trainer.training.batch_size", 4),
        ({"trainer": {"method": "dora"}}, "trainer.method", "dora"),
        ({"num_nodes": 3, "procs_per_node": 2}, "num_nodes", 3),
        ({"num_nodes": 3, "procs_per_node": 2}, "procs_per_node", 2),
        ({"resources": {"cpu": 1}}, "resources.cpu", 1.0),
        ({"resources": {"cpu": 1}}, "resources.memory", None),  # resources are taken whole, not merged
        # nested merge: a sibling the user set does not wipe the runtime's values next to it
        ({"trainer": {"training": {"max_steps": 7}}}, "trainer.training.batch_size", 8),
        ({"trainer": {"training": {"max_steps": 7}}}, "trainer.training.max_steps", 7),
        ({"trainer": {"lora": {"r": 4}}}, "trainer.lora.r", 4),
        # a job that names its model gets no model initializer
        ({"trainer": {"model": {"path": "/models/mine"}}}, "initializer", None),
        ({"initializer": {"model": "s3://bucket/mine"}}, "initializer.model.storage_uri", "s3://bucket/mine"),
        # the user's dataset initializer stays beside the added model initializer
        ({"initializer": {"dataset": "s3://bucket/data"}}, "initializer.dataset.storage_uri", "s3://bucket/data"),
        (
            {"initializer": {"dataset": "s3://bucket/data"}},
            "initializer.model.storage_uri",
            "hf://HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
    ],
)
def test_runtime_defaults_merge_under_the_users_fields(fields, path, expected):
    value = resolved(fields).model_dump()
    for part in path.split("."):
        value = None if value is None else value[part]
    assert value == expected


def test_runtime_scale_and_gpus_come_from_the_preset():
    spec = resolved({}, "llama3.1-8b-lora")
    assert (spec.num_nodes, spec.procs_per_node, spec.resources.gpu) == (1, 2, 2)
    assert spec.trainer.training.learning_rate == pytest.approx(1e-4)
    assert spec.trainer.training.gradient_checkpointing == "auto"  # the trainer picks the share for its GPU


@pytest.mark.parametrize("runtime", [runtime.name for runtime in list_runtimes()])
def test_every_runtime_inherits_the_time_based_checkpoint_default(runtime):
    assert resolved({}, runtime).trainer.training.checkpoint_every == DEFAULT_CHECKPOINT_EVERY == "30m"
    mine = resolved({"trainer": {"training": {"checkpoint_every": "10m"}}}, runtime)
    assert mine.trainer.training.checkpoint_interval_s() == 600


def test_custom_trainer_jobs_keep_their_empty_llm_config():
    spec = JobSpec.model_validate(
        {"runtime": RUNTIME, "trainer_kind": "custom", "function": {"name": "f", "payload": "eA=="}}
    )
    out = apply_runtime(spec, get_runtime(RUNTIME))
    assert out.trainer.training.batch_size == 4  # the type's default, not the runtime's LLM preset
    assert out.resources.cpu == 4.0 and out.initializer.model.storage_uri.startswith("hf://")


def test_merged_spec_is_validated_naming_the_field():
    spec = JobSpec.model_validate({"runtime": RUNTIME})
    runtime = get_runtime(RUNTIME)
    broken = type(runtime)(**{**runtime.__dict__, "resources_per_node": {"requests": {"cpu": "-1"}}})
    with pytest.raises(ConfigError, match=r"runtime 'smollm2-135m-lora' is invalid: resources\.cpu"):
        apply_runtime(spec, broken)


@pytest.mark.parametrize(
    ("name", "close"),
    [("smollm2-135m-lorra", "smollm2-135m-lora"), ("qwen3-8b-dpo", "qwen3-8b-lora"), ("zzz", "available: ")],
)
def test_unknown_runtime_names_close_matches(name, close):
    with pytest.raises(ConfigError, match=rf"unknown runtime '{name}'.*{close}"):
        get_runtime(name)


@pytest.mark.parametrize(
    ("requirements", "resources"),
    [
        ({"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}, {"cpu": 0.5, "memory": "2Gi"}),
        ({"limits": {"cpu": 2, "nvidia.com/gpu": "1"}}, {"cpu": 2.0, "gpu": 1}),
        ({"requests": {"memory": "1e9"}}, {}),
    ],
)
def test_kubernetes_resources_become_job_resources(requirements, resources):
    assert resources_from_kubernetes(requirements) == resources


def test_job_resources_become_kubernetes_requirements_and_back():
    requirements = resources_to_kubernetes({"cpu": 1.5, "memory": "8Gi", "gpu": 2})
    assert requirements == {
        "requests": {"cpu": "1500m", "memory": "8Gi", "nvidia.com/gpu": 2},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": 2},
    }
    assert resources_from_kubernetes(requirements) == {"cpu": 1.5, "memory": "8Gi", "gpu": 2}
