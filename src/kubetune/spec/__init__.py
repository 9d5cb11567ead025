"""The typed job specification shared by every layer (no heavy imports here)."""

from kubetune.spec.job import JobSpec, load_job_file
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
    "JobSpec",
    "LLMConfig",
    "LoraConfig",
    "ModelConfig",
    "OutputConfig",
    "PeftPassThrough",
    "PromptLearningConfig",
    "TrainingConfig",
    "load_job_file",
]
