"""The memory plan ``kubetune validate`` prints: the job's speed settings resolved for a GPU, by component."""

from __future__ import annotations

from pathlib import Path

from kubetune.errors import KubetuneError
from kubetune.planning import GIB, ModelShape
from kubetune.spec.job import JobSpec
from kubetune.trainer.model_files import resolve_local
from kubetune.trainer.speed_plan import DeviceInfo, resolve_speed


def _shape(spec: JobSpec) -> ModelShape | None:
    """The model's sizes: a local model folder's config.json, else the catalog runtime's entry."""
    if spec.trainer.model.path is not None:
        try:
            folder = resolve_local(spec.trainer.model.path, Path(), "trainer.model.path")
        except KubetuneError:  # a remote URI or a missing package: the job's own checks report it
            return None
        if (folder / "config.json").is_file():
            return ModelShape.from_model_dir(folder)
        return None
    if spec.runtime is not None:
        from kubetune.runtimes.catalog import catalog_model_shape

        return catalog_model_shape(spec.runtime)
    return None


def job_plan(spec: JobSpec, gpu_memory_gib: float) -> str:
    """The plan of a builtin job on GPUs of ``gpu_memory_gib``, as printable lines.

    A job naming a catalog runtime is planned with the runtime's defaults applied.

    Raises:
        ConfigError: the plan does not fit, or a forced speed setting cannot work.
    """
    if spec.trainer_kind != "builtin":
        return "plan: none (a custom trainer's memory is its own)"
    if spec.runtime is not None:
        from kubetune.runtimes import apply_runtime, list_runtimes

        packaged = {runtime.name: runtime for runtime in list_runtimes()}
        if spec.runtime not in packaged:
            return f"plan: skipped (runtime {spec.runtime!r} is not in the packaged catalog)"
        spec = apply_runtime(spec, packaged[spec.runtime])
    shape = _shape(spec)
    if shape is None:
        return "plan: skipped (needs the model's config.json: a local model folder or a catalog runtime)"
    world = spec.num_nodes * spec.procs_per_node
    gpu = DeviceInfo("cuda", bf16=True, memory_bytes=gpu_memory_gib * GIB, name=f"a {gpu_memory_gib:g} GiB GPU")
    speed = resolve_speed(spec.trainer, gpu, world, shape)
    tokens = speed.plan.setup.tokens
    return (
        f"plan per GPU ({gpu_memory_gib:g} GiB, {world} process(es), up to {tokens} tokens per micro-batch):\n"
        f"  {speed.describe()}\n{speed.plan.breakdown()}"
    )
