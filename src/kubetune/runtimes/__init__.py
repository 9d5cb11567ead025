"""The runtime catalog: ready-made ClusterTrainingRuntimes for common model families.

``list_runtimes()`` and ``get_runtime(name)`` return typed :class:`Runtime` objects. The local
backend reads the packaged catalog through them; the Kubernetes backend builds the same type
from the cluster's ClusterTrainingRuntimes with :func:`runtime_from_manifest`.
"""

from kubetune.runtimes.catalog import (
    Runtime,
    catalog_manifests,
    get_runtime,
    list_runtimes,
    runtime_from_manifest,
)

__all__ = ["Runtime", "catalog_manifests", "get_runtime", "list_runtimes", "runtime_from_manifest"]
