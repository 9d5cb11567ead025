"""The runtimes the local backend offers, read from kubetune's packaged catalog when installed.

The catalog lives in ``kubetune.runtimes`` (``list_runtimes()`` returning objects with at least
a ``name``). Without it, there are no named runtimes and jobs run with their own settings.
"""

from __future__ import annotations

import importlib
import importlib.util

from kubetune.client.types import Runtime


def packaged_runtimes() -> list[Runtime]:
    """Every runtime of the packaged catalog, or an empty list when no catalog is installed."""
    if importlib.util.find_spec("kubetune.runtimes") is None:
        return []
    catalog = importlib.import_module("kubetune.runtimes")
    entries = getattr(catalog, "list_runtimes", None)
    if entries is None:
        return []
    return [
        Runtime(
            name=entry.name,
            trainer_kind=str(getattr(entry, "trainer_kind", "builtin")),
            description=str(getattr(entry, "description", "") or ""),
            num_nodes=int(getattr(entry, "num_nodes", 1) or 1),
            procs_per_node=int(getattr(entry, "procs_per_node", 1) or 1),
        )
        for entry in entries()
    ]
