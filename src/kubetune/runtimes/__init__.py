"""The runtime catalog: ready-made ClusterTrainingRuntimes for common model families.

``list_runtimes()`` and ``get_runtime(name)`` return typed :class:`Runtime` objects, the one
runtime type of kubetune (``kubetune.client.Runtime`` is the same class). The local backend
reads the packaged catalog through them; the Kubernetes backend builds the same type from the
cluster's ClusterTrainingRuntimes with :func:`runtime_from_manifest`. :func:`apply_runtime`
puts a runtime's defaults under a job spec's own fields.
"""

from kubetune.runtimes.catalog import (
    Runtime,
    catalog_manifests,
    get_runtime,
    list_runtimes,
    runtime_from_manifest,
    unknown_runtime,
)
from kubetune.runtimes.defaults import apply_runtime

__all__ = [
    "Runtime",
    "apply_runtime",
    "catalog_manifests",
    "get_runtime",
    "list_runtimes",
    "runtime_from_manifest",
    "unknown_runtime",
]
