"""kubetune: fine-tune large language models on a laptop, one GPU, or a Kubernetes cluster."""

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

__version__ = "0.1.0"

__all__ = [
    "DatasetConfig",
    "JobSpec",
    "LLMConfig",
    "LoraConfig",
    "ModelConfig",
    "OutputConfig",
    "TrainingConfig",
    "fine_tune",
]
