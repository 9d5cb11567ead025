"""Every GPU runtime of the catalog fits its GPUs by the memory plan, with the speed settings left to auto."""

from __future__ import annotations

import pytest

from kubetune.planning import GIB
from kubetune.runtimes import list_runtimes
from kubetune.runtimes.catalog import catalog_gpu_memory_gib, catalog_model_shape
from kubetune.spec.trainer import SPEED_SETTINGS
from kubetune.trainer.speed_plan import DeviceInfo, resolve_speed

GPU_RUNTIMES = [runtime for runtime in list_runtimes() if runtime.resources_per_node["requests"].get("nvidia.com/gpu")]


def test_the_catalog_has_gpu_runtimes_of_every_size():
    names = {runtime.name for runtime in GPU_RUNTIMES}
    assert {"llama3.3-70b-lora", "llama3.1-8b-full", "llama3.1-8b-qlora", "qwen2.5-0.5b-full"} <= names


@pytest.mark.parametrize("runtime", GPU_RUNTIMES, ids=lambda runtime: runtime.name)
def test_blueprint_plan_fits_its_gpus(runtime):
    shape = catalog_model_shape(runtime.name)
    assert shape is not None, f"models.yaml gives no config sizes for {runtime.name}"
    gpu = DeviceInfo("cuda", bf16=True, memory_bytes=catalog_gpu_memory_gib() * GIB, name="catalog GPU")
    world = runtime.num_nodes * runtime.procs_per_node
    speed = resolve_speed(runtime.llm_config, gpu, world, shape)
    assert speed.plan is not None and speed.plan.fits, f"{runtime.name}: {speed.describe()}"


@pytest.mark.parametrize("runtime", GPU_RUNTIMES, ids=lambda runtime: runtime.name)
def test_blueprints_leave_the_speed_settings_to_auto(runtime):
    training = runtime.llm_config.training
    assert all(getattr(training, name) == "auto" for name in SPEED_SETTINGS)


def test_large_models_are_sharded_where_a_replica_does_not_fit():
    gpu = DeviceInfo("cuda", bf16=True, memory_bytes=catalog_gpu_memory_gib() * GIB)
    strategies = {}
    for runtime in GPU_RUNTIMES:
        world = runtime.num_nodes * runtime.procs_per_node
        speed = resolve_speed(runtime.llm_config, gpu, world, catalog_model_shape(runtime.name))
        strategies[runtime.name] = speed.training.distributed
    assert strategies["llama3.1-8b-full"] == "fsdp" and strategies["llama3.3-70b-lora"] == "fsdp"
    assert strategies["llama3.1-8b-lora"] == "ddp"
