"""kubetune's SDK: ``TrainerClient`` and the types it takes and returns."""

from kubetune.client.trainer_client import JobOption, MaxRestarts, Name, RunDirectory, TrainerClient
from kubetune.contracts.types import (
    BuiltinTrainer,
    CustomTrainer,
    Event,
    Initializer,
    Job,
    JobOutputs,
    JobStatus,
    Progress,
    Step,
    StepStatus,
)
from kubetune.runtimes import Runtime
from kubetune.spec.trainer import LLMConfig

__all__ = [
    "BuiltinTrainer",
    "CustomTrainer",
    "Event",
    "Initializer",
    "Job",
    "JobOption",
    "JobOutputs",
    "JobStatus",
    "LLMConfig",
    "MaxRestarts",
    "Name",
    "Progress",
    "RunDirectory",
    "Runtime",
    "Step",
    "StepStatus",
    "TrainerClient",
]
