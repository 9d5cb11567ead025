"""Model and dataset initializers: fetch what a job needs before training starts.

Entry points:

- :func:`run_initializer` (Python; the local backend calls it for each initializer step)
- ``python -m kubetune.initializers model|dataset ...`` (the same, configured by arguments
  and environment variables; what the Kubernetes init containers run)

Sources are handled by providers (``hf://``, ``s3://``, ``file://`` and plain paths,
``pkg://``, or custom ones registered with :func:`register_provider` or the
``kubetune.providers`` entry point group); results go through a verified, content-addressed
cache (:mod:`kubetune.initializers.cache`).
"""

from kubetune.initializers.providers import (
    DatasetProvider,
    Listing,
    ModelProvider,
    Provider,
    RemoteFile,
    TransientFetchError,
)
from kubetune.initializers.registry import ENTRY_POINT_GROUP, register_provider, unregister_provider
from kubetune.initializers.run import InitializerResult, run_initializer

__all__ = [
    "ENTRY_POINT_GROUP",
    "DatasetProvider",
    "InitializerResult",
    "Listing",
    "ModelProvider",
    "Provider",
    "RemoteFile",
    "TransientFetchError",
    "register_provider",
    "run_initializer",
    "unregister_provider",
]
