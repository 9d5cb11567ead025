"""The typed job specification shared by every layer (no heavy imports here)."""

from kubetune.spec.initializer import DatasetInitializer, ModelInitializer, S3Options, SecretRef
from kubetune.spec.job import FunctionSpec, JobInitializers, JobSpec, ResourcesSpec, load_job_file
from kubetune.spec.trainer import (
    DatasetConfig,
    LLMConfig,
    LoraConfig,
    ModelConfig,
    OutputConfig,
    PeftPassThrough,
    PromptLearningConfig,
    TrainingConfig,
)

__all__ = [
    "DatasetConfig",
    "DatasetInitializer",
    "FunctionSpec",
    "JobInitializers",
    "JobSpec",
    "LLMConfig",
    "LoraConfig",
    "ModelConfig",
    "ModelInitializer",
    "OutputConfig",
    "PeftPassThrough",
    "PromptLearningConfig",
    "ResourcesSpec",
    "S3Options",
    "SecretRef",
    "TrainingConfig",
    "load_job_file",
]
