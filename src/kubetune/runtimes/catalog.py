"""Build the packaged ClusterTrainingRuntimes from ``blueprints/`` and read runtimes as typed objects.

``blueprints/template.yaml`` is the ClusterTrainingRuntime every entry starts from;
``blueprints/models.yaml`` lists the models and, per size class, each method's scale and
resources. :func:`catalog_manifests` renders one manifest per (model, method);
``python -m kubetune.runtimes`` prints them (``deploy/runtimes/runtimes.yaml`` is that output).
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetune.contracts.version import __version__
from kubetune.controller.api import NODE, RuntimeSpec
from kubetune.errors import ConfigError
from kubetune.planning import ModelShape
from kubetune.spec.base import format_validation_error
from kubetune.spec.trainer import LLMConfig

BLUEPRINTS = Path(__file__).with_name("blueprints")
FAMILY_LABEL = "kubetune.dev/family"
METHOD_LABEL = "kubetune.dev/method"
MODEL_LABEL = "kubetune.dev/model"
DESCRIPTION_ANNOTATION = "kubetune.dev/description"


def default_image() -> str:
    """The trainer/initializer image matching this package's version."""
    return f"ghcr.io/kubetune/kubetune:{__version__}"


@dataclass(frozen=True)
class Runtime:
    """A named, reusable training setup: what every backend's ``list_runtimes()``/``get_runtime()`` return.

    A job naming it gets its defaults under the job's own fields (see
    :func:`kubetune.runtimes.apply_runtime`): the LLM config, the scale, the resources and, when
    the job names no model, a model initializer fetching ``model_uri``.

    Attributes:
        name: runtime name (``<model>-<method>`` for catalog entries).
        family: model family label (llama, qwen, mistral, gemma, phi, smollm), or None.
        method: fine-tuning method of its LLM defaults (lora, qlora, full, ...).
        model_uri: where the model initializer fetches the model (``hf://...``), or None.
        description: one line for listings.
        image: image of the ``node`` container.
        num_nodes: default number of nodes.
        procs_per_node: default torchrun processes per node.
        resources_per_node: default resources of the ``node`` container (Kubernetes ``ResourceRequirements``).
        llm_config: the trainer defaults a job's own LLM config is merged over.
        spec: the validated runtime spec.
        manifest: the full ClusterTrainingRuntime (or TrainingRuntime) object.
    """

    name: str
    family: str | None
    method: str
    model_uri: str | None
    description: str
    image: str | None
    num_nodes: int
    procs_per_node: int
    resources_per_node: dict[str, Any]
    llm_config: LLMConfig
    spec: RuntimeSpec = field(repr=False)
    manifest: dict[str, Any] = field(repr=False)


def runtime_from_manifest(manifest: dict[str, Any]) -> Runtime:
    """Type a (Cluster)TrainingRuntime object.

    Raises:
        ConfigError: the spec or its LLM defaults are invalid.
    """
    meta = manifest.get("metadata", {})
    name = meta.get("name", "?")
    try:
        spec = RuntimeSpec.model_validate(manifest.get("spec") or {})
        llm = LLMConfig.model_validate(spec.llm_config or {})
    except ValidationError as err:
        raise ConfigError(f"runtime {name}: {format_validation_error(err, 'spec')}") from None
    node = _node_container(spec)
    labels = meta.get("labels") or {}
    model = spec.initializer.model if spec.initializer else None
    return Runtime(
        name=name,
        family=labels.get(FAMILY_LABEL),
        method=llm.method,
        model_uri=model.storage_uri if model else None,
        description=(meta.get("annotations") or {}).get(DESCRIPTION_ANNOTATION, ""),
        image=node.get("image"),
        num_nodes=spec.ml_policy.num_nodes,
        procs_per_node=spec.ml_policy.torch.num_proc_per_node,
        resources_per_node=copy.deepcopy(node.get("resources", {})),
        llm_config=llm,
        spec=spec,
        manifest=copy.deepcopy(manifest),
    )


def _node_container(spec: RuntimeSpec) -> dict[str, Any]:
    for job in spec.template.spec.get("replicatedJobs", []):
        if job.get("name") == NODE:
            for container in job["template"]["spec"]["template"]["spec"]["containers"]:
                if container.get("name") == NODE:
                    return container
    return {}


def catalog_manifests(image: str | None = None) -> list[dict[str, Any]]:
    """Render every catalog entry as a ClusterTrainingRuntime manifest, sorted by name.

    Args:
        image: trainer/initializer image (default: :func:`default_image`).
    """
    image = image or default_image()
    template = yaml.safe_load((BLUEPRINTS / "template.yaml").read_text(encoding="utf-8"))
    table = _table()
    manifests = []
    for model in table["models"]:
        presets = table["size_classes"][model["size"]]
        for method in model.get("methods", list(presets)):
            manifests.append(_render_entry(template, model, method, presets[method], image))
    return sorted(manifests, key=lambda manifest: manifest["metadata"]["name"])


def _render_entry(template: dict, model: dict, method: str, preset: dict, image: str) -> dict:
    manifest = copy.deepcopy(template)
    name = f"{model['name']}-{method}"
    scale = f"{preset['numNodes']} node(s) x {preset['numProcPerNode']} proc"
    manifest["metadata"] = {
        "name": name,
        "labels": {
            **template["metadata"]["labels"],
            FAMILY_LABEL: model["family"],
            METHOD_LABEL: method,
            MODEL_LABEL: model["name"],
        },
        "annotations": {DESCRIPTION_ANNOTATION: f"{method} fine-tuning of {model['uri']} ({scale})"},
    }
    spec = manifest["spec"]
    spec["mlPolicy"] = {"numNodes": preset["numNodes"], "torch": {"numProcPerNode": preset["numProcPerNode"]}}
    spec["initializer"] = {"model": {"storageUri": model["uri"]}}
    gpu = preset["gpus"] > 0
    # Precision, packing, checkpointing and the other speed settings stay ``auto``: the trainer
    # resolves them for the GPU it runs on (see kubetune.trainer.speed_plan).
    spec["llmConfig"] = {
        "method": method,
        "training": {"batch_size": preset["batchSize"], "learning_rate": preset["learningRate"]},
    }
    spec["workspace"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] = preset["storage"]
    if preset["numNodes"] > 1:
        spec["workspace"]["volumeClaimTemplate"]["spec"]["accessModes"] = ["ReadWriteMany"]
    for job in spec["template"]["spec"]["replicatedJobs"]:
        for container in job["template"]["spec"]["template"]["spec"]["containers"]:
            container["image"] = image
            if container["name"] == NODE:
                requests = {"cpu": preset["cpu"], "memory": preset["memory"]}
                limits = {"memory": preset["memory"]}
                if gpu:
                    requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = preset["gpus"]
                container["resources"] = {"requests": requests, "limits": limits}
    return manifest


def _table() -> dict[str, Any]:
    return yaml.safe_load((BLUEPRINTS / "models.yaml").read_text(encoding="utf-8"))


def catalog_gpu_memory_gib() -> float:
    """Memory of the GPU (GiB) the catalog's presets are sized for."""
    return float(_table()["gpu_memory_gib"])


def catalog_model_shape(name: str) -> ModelShape | None:
    """The model sizes of catalog runtime ``name`` (from ``models.yaml``), or None for other runtimes."""
    table = _table()
    for model in table["models"]:
        names = {f"{model['name']}-{method}" for method in model.get("methods", table["size_classes"][model["size"]])}
        if name in names and "config" in model:
            return ModelShape.from_config({"model_type": model["family"], **model["config"]}, f"models.yaml {name}")
    return None


@cache
def _packaged() -> dict[str, Runtime]:
    return {manifest["metadata"]["name"]: runtime_from_manifest(manifest) for manifest in catalog_manifests()}


def list_runtimes(family: str | None = None, method: str | None = None) -> list[Runtime]:
    """The packaged runtimes, optionally only one family and/or method, sorted by name."""
    return [
        runtime
        for runtime in _packaged().values()
        if (family is None or runtime.family == family) and (method is None or runtime.method == method)
    ]


def get_runtime(name: str) -> Runtime:
    """The packaged runtime called ``name``.

    Raises:
        ConfigError: no such runtime (the message lists the closest names).
    """
    runtimes = _packaged()
    if name not in runtimes:
        raise unknown_runtime(name, runtimes)
    return runtimes[name]


def unknown_runtime(name: str, known: Iterable[str]) -> ConfigError:
    """The error for a runtime that does not exist, naming the closest known names."""
    known = sorted(known)
    if not known:
        return ConfigError(f"runtime: unknown runtime {name!r}; no runtimes are available")
    prefix = name.split("-")[0]
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    close += [other for other in known if other.startswith(prefix) and other not in close][: 5 - len(close)]
    if close:
        return ConfigError(f"runtime: unknown runtime {name!r}; did you mean {', '.join(close)}?")
    shown = ", ".join(known[:5]) + (f" ... ({len(known)} in all)" if len(known) > 5 else "")
    return ConfigError(f"runtime: unknown runtime {name!r}; available: {shown}")
