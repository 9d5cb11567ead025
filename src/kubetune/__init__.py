"""kubetune: fine-tune large language models on a laptop, one GPU, or a Kubernetes cluster.

The public names below are imported on first use, so importing one layer (``kubetune.contracts``,
``kubetune.spec``...) does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kubetune.contracts.version import __version__

if TYPE_CHECKING:
    from kubetune.local_run import fine_tune
    from kubetune.spec import (
        DatasetConfig,
        JobSpec,
        LLMConfig,
        LoraConfig,
        ModelConfig,
        OutputConfig,
        TrainingConfig,
    )

_PUBLIC = {
    "DatasetConfig": "kubetune.spec",
    "JobSpec": "kubetune.spec",
    "LLMConfig": "kubetune.spec",
    "LoraConfig": "kubetune.spec",
    "ModelConfig": "kubetune.spec",
    "OutputConfig": "kubetune.spec",
    "TrainingConfig": "kubetune.spec",
    "fine_tune": "kubetune.local_run",
}

__all__ = [
    "DatasetConfig",
    "JobSpec",
    "LLMConfig",
    "LoraConfig",
    "ModelConfig",
    "OutputConfig",
    "TrainingConfig",
    "__version__",
    "fine_tune",
]


def __getattr__(name: str) -> object:
    """Import a public name of the package on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'kubetune' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
