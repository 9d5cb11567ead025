"""The packaged runtime catalog: typed, complete, and every entry renders a valid JobSet."""

from __future__ import annotations

import pytest
from k8s_schemas import make_trainjob, validate_k8s

from kubetune.controller.reconcile import reconcile
from kubetune.errors import ConfigError
from kubetune.runtimes import get_runtime, list_runtimes

FAMILIES = {"llama", "qwen", "mistral", "gemma", "phi", "smollm"}


def test_catalog_covers_the_families_and_methods():
    runtimes = list_runtimes()
    assert {r.family for r in runtimes} == FAMILIES
    assert {r.method for r in runtimes} == {"lora", "qlora", "full"}
    assert len({r.name for r in runtimes}) == len(runtimes)
    for family in FAMILIES:
        assert {r.method for r in list_runtimes(family=family)} >= {"lora", "qlora"}


def test_runtime_is_typed_for_the_local_backend():
    runtime = get_runtime("qwen2.5-0.5b-lora")
    assert runtime.model_uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
    assert runtime.llm_config.method == "lora"
    assert runtime.num_nodes == 1 and runtime.procs_per_node == 1
    assert runtime.image.startswith("ghcr.io/kubetune/kubetune:")


def test_presets_scale_with_the_method():
    full, qlora = get_runtime("llama3.1-8b-full"), get_runtime("llama3.1-8b-qlora")
    gpus = lambda r: int(r.resources_per_node["limits"].get("nvidia.com/gpu", 0))  # noqa: E731
    assert full.num_nodes * gpus(full) > qlora.num_nodes * gpus(qlora)
    assert full.llm_config.training.learning_rate < qlora.llm_config.training.learning_rate


def test_multi_node_runtimes_share_the_workspace_read_write_many():
    for runtime in list_runtimes():
        modes = runtime.spec.workspace.volume_claim_template["spec"]["accessModes"]
        assert ("ReadWriteMany" in modes) == (runtime.num_nodes > 1), runtime.name


def test_filters_narrow_the_list():
    assert {r.method for r in list_runtimes(method="qlora")} == {"qlora"}
    assert {r.family for r in list_runtimes(family="gemma")} == {"gemma"}


def test_unknown_runtime_names_the_close_ones():
    with pytest.raises(ConfigError, match=r"unknown runtime 'llama3.1-8b-grpo'.*llama3.1-8b-(dpo|lora)"):
        get_runtime("llama3.1-8b-grpo")


@pytest.mark.parametrize("name", [r.name for r in list_runtimes()])
def test_every_runtime_renders_a_valid_jobset(name, jobset_validator):
    runtime = get_runtime(name)
    trainjob = make_trainjob(
        runtimeRef={"name": name}, initializer={"dataset": {"storageUri": "s3://data/train.jsonl"}}
    )
    desired = reconcile(trainjob, runtime.manifest, {})
    jobset_validator.validate(desired.jobset)
    validate_k8s(desired.workspace)
    node = desired.jobset["spec"]["replicatedJobs"][-1]
    assert node["template"]["spec"]["parallelism"] == runtime.num_nodes
    validate_k8s({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "n"}, **node["template"]})
