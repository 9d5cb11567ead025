"""The typed job specification shared by every layer (no heavy imports here)."""

from kubetune.spec.job import (
    FunctionSpec,
    InitializerSpec,
    JobSpec,
    ResourcesSpec,
    StorageSource,
    load_job_file,
)
from kubetune.spec.trainer import (
    DatasetConfig,
    LLMConfig,
    LoraConfig,
    ModelConfig,
    OutputConfig,
    TrainingConfig,
)

__all__ = [
    "DatasetConfig",
    "FunctionSpec",
    "InitializerSpec",
    "JobSpec",
    "LLMConfig",
    "LoraConfig",
    "ModelConfig",
    "OutputConfig",
    "ResourcesSpec",
    "StorageSource",
    "TrainingConfig",
    "load_job_file",
]
