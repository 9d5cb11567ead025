"""Kubeflow's fine-tuning APIs on kubetune: change the imports, keep the calls.

- Training Operator (v1): ``TrainingClient().train(name, model_provider_parameters=HuggingFaceModelParams(...),
  dataset_provider_parameters=HuggingFaceDatasetParams(...), trainer_parameters=HuggingFaceTrainerParams(...),
  num_workers, num_procs_per_worker, resources_per_worker)``, plus ``get_job``, ``get_job_logs``,
  ``wait_for_job_conditions`` and ``delete_job``.
- Trainer v2: ``TrainerClient().train(runtime, initializer=Initializer(model=HuggingFaceModelInitializer(...),
  dataset=HuggingFaceDatasetInitializer(...)), trainer=BuiltinTrainer(config=TorchTuneConfig(...)) or
  CustomTrainer(...))``.

Every field is honoured, approximated, ignored (no effect on the weights) or refused with a one-line
error naming it; docs/kubeflow.md has the tables.
"""

from kubetune.compat.kubeflow.trainer_v2 import (
    BuiltinTrainer,
    CustomTrainer,
    DataFormat,
    DataType,
    HuggingFaceDatasetInitializer,
    HuggingFaceModelInitializer,
    Initializer,
    LoraConfig,
    Loss,
    S3DatasetInitializer,
    S3ModelInitializer,
    TorchTuneConfig,
    TorchTuneInstructDataset,
    TrainerClient,
)
from kubetune.compat.kubeflow.training_v1 import (
    HuggingFaceDatasetParams,
    HuggingFaceModelParams,
    HuggingFaceTrainerParams,
    S3DatasetParams,
    TrainingClient,
)

__all__ = [
    "BuiltinTrainer",
    "CustomTrainer",
    "DataFormat",
    "DataType",
    "HuggingFaceDatasetInitializer",
    "HuggingFaceDatasetParams",
    "HuggingFaceModelInitializer",
    "HuggingFaceModelParams",
    "HuggingFaceTrainerParams",
    "Initializer",
    "LoraConfig",
    "Loss",
    "S3DatasetInitializer",
    "S3DatasetParams",
    "S3ModelInitializer",
    "TorchTuneConfig",
    "TorchTuneInstructDataset",
    "TrainerClient",
    "TrainingClient",
]
