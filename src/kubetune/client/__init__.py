"""kubetune's SDK: ``TrainerClient`` and the types it takes and returns."""

from kubetune.client.optimizer_client import OptimizerClient, StudyResult, TrialResult
from kubetune.client.study_spec import Choice, IntRange, LogUniform, ObjectiveSpec, StudySpec, Uniform, load_study_file
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
    "Choice",
    "CustomTrainer",
    "Event",
    "Initializer",
    "IntRange",
    "Job",
    "JobOption",
    "JobOutputs",
    "JobStatus",
    "LLMConfig",
    "LogUniform",
    "MaxRestarts",
    "Name",
    "ObjectiveSpec",
    "OptimizerClient",
    "Progress",
    "RunDirectory",
    "Runtime",
    "Step",
    "StepStatus",
    "StudyResult",
    "StudySpec",
    "TrainerClient",
    "TrialResult",
    "Uniform",
    "load_study_file",
]
