"""Kubeflow Training Operator's LLM API (``kubeflow.training.TrainingClient().train(...)``) on kubetune.

A Kubeflow user changes the import lines and keeps the call::

    from kubetune.compat.kubeflow import (
        TrainingClient, HuggingFaceModelParams, HuggingFaceDatasetParams, HuggingFaceTrainerParams,
    )

``train()`` builds the same job the native SDK builds from ``Initializer`` and
``BuiltinTrainer`` (docs/kubeflow.md has the mapping of every field), so it runs on the local
backend (the default here) or a Kubernetes cluster (``backend="kubernetes"``) like any kubetune
job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubetune.client import BuiltinTrainer, Initializer, Job, JobStatus, Name, TrainerClient
from kubetune.compat.kubeflow.sources import secret, storage_uri, task_of
from kubetune.errors import ConfigError
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer, S3Options, SecretRef

#: The dataset format each model task trains on.
DATA_FORMATS = {"causal-lm": "text", "sequence-classification": "classification", "token-classification": "tagging"}
#: Kubeflow v1 job conditions and the kubetune status each means.
CONDITIONS = {
    "Created": JobStatus.CREATED,
    "Running": JobStatus.RUNNING,
    "Succeeded": JobStatus.COMPLETE,
    "Failed": JobStatus.FAILED,
}


@dataclass
class HuggingFaceModelParams:
    """The pre-trained model (Kubeflow's ``HuggingFaceModelParams``).

    Args:
        model_uri: ``hf://org/name``, or any kubetune storage URI or local path.
        transformer_type: ``transformers.AutoModelForCausalLM``, ``AutoModelForSequenceClassification`` or
            ``AutoModelForTokenClassification`` (the class or its name); other Auto classes are refused.
        access_token: a :class:`~kubetune.spec.SecretRef` to the Hub token (a plain token is refused).
        num_labels: classes of a classifier; integer labels ``0..num_labels-1``.
    """

    model_uri: str
    transformer_type: Any
    access_token: SecretRef | None = None
    num_labels: int | None = None

    def __post_init__(self) -> None:
        if not self.model_uri:
            raise ConfigError("model_uri: must not be empty")

    def initializer(self) -> ModelInitializer:
        """The model initializer fetching ``model_uri``."""
        token = secret(self.access_token, "HuggingFaceModelParams.access_token")
        return ModelInitializer(storage_uri=storage_uri(self.model_uri, "hf"), **({"token": token} if token else {}))


@dataclass
class HuggingFaceDatasetParams:
    """A Hugging Face dataset (Kubeflow's ``HuggingFaceDatasetParams``).

    Args:
        repo_id: ``org/name`` on the Hub, or any kubetune storage URI or local path.
        access_token: a :class:`~kubetune.spec.SecretRef` to the Hub token.
        split: a split expression: ``train``, ``train[:3000]``, ``train[10%:]``.
    """

    repo_id: str
    access_token: SecretRef | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        if not self.repo_id:
            raise ConfigError("repo_id: must not be empty")

    def initializer(self) -> DatasetInitializer:
        """The dataset initializer fetching the repository."""
        token = secret(self.access_token, "HuggingFaceDatasetParams.access_token")
        return DatasetInitializer(storage_uri=storage_uri(self.repo_id, "hf"), **({"token": token} if token else {}))


@dataclass
class S3DatasetParams:
    """A dataset object in S3-compatible storage (Kubeflow's ``S3DatasetParams``).

    ``access_key`` and ``secret_key`` are :class:`~kubetune.spec.SecretRef` (plain keys are refused);
    without them the AWS credential chain applies.
    """

    endpoint_url: str
    bucket_name: str
    file_key: str
    region_name: str | None = None
    access_key: SecretRef | None = None
    secret_key: SecretRef | None = None

    def __post_init__(self) -> None:
        if not (self.endpoint_url and self.bucket_name and self.file_key):
            raise ConfigError("S3DatasetParams: endpoint_url, bucket_name and file_key are required")

    def initializer(self) -> DatasetInitializer:
        """The dataset initializer fetching ``s3://bucket_name/file_key``."""
        options = {
            "endpoint_url": self.endpoint_url,
            "region": self.region_name,
            "access_key_id": secret(self.access_key, "S3DatasetParams.access_key"),
            "secret_access_key": secret(self.secret_key, "S3DatasetParams.secret_key"),
        }
        s3 = S3Options(**{key: value for key, value in options.items() if value is not None})
        return DatasetInitializer(storage_uri=f"s3://{self.bucket_name}/{self.file_key.lstrip('/')}", s3=s3)


@dataclass
class HuggingFaceTrainerParams:
    """The loop and adapter settings (Kubeflow's ``HuggingFaceTrainerParams``).

    Args:
        training_parameters: a ``transformers.TrainingArguments`` (default: its defaults).
        lora_config: a ``peft.LoraConfig`` (default: its defaults), or any other PEFT config.
    """

    training_parameters: Any = None
    lora_config: Any = None

    def __post_init__(self) -> None:
        if self.training_parameters is None:
            from transformers import TrainingArguments

            self.training_parameters = TrainingArguments()
        if self.lora_config is None:
            from peft import LoraConfig

            self.lora_config = LoraConfig()


def llm_config(
    model: HuggingFaceModelParams,
    dataset: HuggingFaceDatasetParams | S3DatasetParams,
    trainer: HuggingFaceTrainerParams,
) -> dict[str, Any]:
    """The LLM config fields a Kubeflow ``train()`` call stands for.

    A causal LM trains on the dataset's ``text`` column, a sequence classifier on ``text`` and
    ``label`` (as Kubeflow's trainer reads them), a token classifier on ``tokens`` and ``tags``.
    """
    task = task_of(model.transformer_type)
    dataset_fields: dict[str, Any] = {"format": DATA_FORMATS[task]}
    if isinstance(dataset, HuggingFaceDatasetParams) and dataset.split is not None:
        dataset_fields["split"] = dataset.split
    if model.num_labels is not None:
        if task == "causal-lm":
            raise ConfigError("num_labels: only a classifier (sequence or token classification) has labels")
        dataset_fields["labels"] = [str(index) for index in range(model.num_labels)]
    return {
        "model": {"task": task},
        "dataset": dataset_fields,
        "lora": trainer.lora_config,
        "training": trainer.training_parameters,
    }


def resources_dict(resources: Any) -> dict[str, Any] | None:
    """``resources_per_worker`` (a dict, or a ``V1ResourceRequirements``) as kubetune resources."""
    if resources is None or isinstance(resources, dict):
        return resources
    if hasattr(resources, "limits") or hasattr(resources, "requests"):
        return {**(getattr(resources, "requests", None) or {}), **(getattr(resources, "limits", None) or {})}
    raise ConfigError(
        f"resources_per_worker: expected a dict or V1ResourceRequirements, got {type(resources).__name__}"
    )


class TrainingClient:
    """Kubeflow's ``TrainingClient`` for LLM fine-tuning, running kubetune jobs.

    Args:
        config_file, context: kubeconfig file and context (``backend="kubernetes"`` only).
        client_configuration: refused; pass a configured backend instead.
        namespace: the Kubernetes namespace (the local backend has none and ignores it).
        job_kind: ``PyTorchJob`` (kubetune's jobs are torchrun jobs); others are refused.
        backend: ``"local"`` (default), ``"kubernetes"``, or a kubetune backend instance.
    """

    def __init__(
        self,
        config_file: str | None = None,
        context: str | None = None,
        client_configuration: Any = None,
        namespace: str | None = None,
        job_kind: str | None = None,
        *,
        backend: Any = "local",
    ):
        if client_configuration is not None:
            raise ConfigError("client_configuration: pass backend=KubernetesBackend(api_client=...) instead")
        if job_kind not in (None, "PyTorchJob"):
            raise ConfigError(f"job_kind={job_kind!r}: kubetune runs torchrun jobs (PyTorchJob) only")
        if backend == "kubernetes":
            from kubetune.backends.kubernetes import KubernetesBackend

            backend = KubernetesBackend(namespace=namespace, context=context, config_file=config_file)
        elif backend == "local" and (config_file or context):
            raise ConfigError("config_file and context apply to backend='kubernetes', not the local backend")
        self.client = TrainerClient(backend)

    def train(
        self,
        name: str | None = None,
        namespace: str | None = None,
        num_workers: int = 1,
        num_procs_per_worker: int = 1,
        resources_per_worker: Any = None,
        model_provider_parameters: HuggingFaceModelParams | None = None,
        dataset_provider_parameters: HuggingFaceDatasetParams | S3DatasetParams | None = None,
        trainer_parameters: HuggingFaceTrainerParams | None = None,
        storage_config: dict[str, Any] | None = None,
    ) -> str:
        """Fine-tune as Kubeflow's ``train()`` says; returns the job name.

        ``num_workers`` are torchrun nodes, ``num_procs_per_worker`` processes per node.
        ``storage_config`` is accepted and not used: the run directory's volume comes from the
        runtime (Kubernetes) or the local disk.

        Raises:
            ConfigError: a required parameter is missing, or a field kubetune refuses (one line naming it).
        """
        if not (name and model_provider_parameters and dataset_provider_parameters and trainer_parameters):
            raise ConfigError(
                "train: name, model_provider_parameters, dataset_provider_parameters and trainer_parameters "
                "are required"
            )
        self._check_namespace(namespace)
        if not isinstance(model_provider_parameters, HuggingFaceModelParams):
            raise ConfigError("model_provider_parameters: expected HuggingFaceModelParams")
        if not isinstance(dataset_provider_parameters, HuggingFaceDatasetParams | S3DatasetParams):
            raise ConfigError("dataset_provider_parameters: expected HuggingFaceDatasetParams or S3DatasetParams")
        if not isinstance(trainer_parameters, HuggingFaceTrainerParams):
            raise ConfigError("trainer_parameters: expected HuggingFaceTrainerParams")
        initializer = Initializer(
            model=model_provider_parameters.initializer(), dataset=dataset_provider_parameters.initializer()
        )
        trainer = BuiltinTrainer(
            config=llm_config(model_provider_parameters, dataset_provider_parameters, trainer_parameters),
            num_nodes=num_workers,
            procs_per_node=num_procs_per_worker,
            resources_per_node=resources_dict(resources_per_worker),
        )
        return self.client.train(initializer=initializer, trainer=trainer, options=[Name(name)])

    def get_job(self, name: str, namespace: str | None = None, job_kind: str | None = None) -> Job:
        """The job (kubetune's :class:`~kubetune.client.Job`: status, steps, progress)."""
        self._check_namespace(namespace)
        return self.client.get_job(name)

    def get_job_conditions(self, name: str, namespace: str | None = None, job_kind: str | None = None) -> list[str]:
        """The Kubeflow conditions the job has reached now (``Created``, ``Running``, ``Succeeded``, ``Suspended``,
        ``Failed``)."""
        status = self.get_job(name, namespace).status
        reached = {JobStatus.CREATED: ["Created"], JobStatus.INITIALIZING: ["Created"]}
        reached[JobStatus.RUNNING] = ["Created", "Running"]
        reached[JobStatus.COMPLETE] = ["Created", "Running", "Succeeded"]
        reached[JobStatus.FAILED] = ["Created", "Failed"]
        reached[JobStatus.CANCELLED] = ["Created", "Failed"]
        reached[JobStatus.SUSPENDED] = ["Created", "Suspended"]
        return reached[status]

    def get_job_logs(
        self,
        name: str,
        namespace: str | None = None,
        job_kind: str | None = None,
        is_master: bool = True,
        replica_type: str | None = None,
        replica_index: int | None = None,
        follow: bool = False,
    ) -> dict[str, str]:
        """Logs by step name: the first node's (``is_master``), node ``replica_index``'s, or every node's.

        With ``follow``, prints the lines as they come until the job ends (one step), then returns them.
        """
        self._check_namespace(namespace)
        if replica_index is not None:
            steps = [f"node-{replica_index}"]
        elif is_master:
            steps = ["node-0"]
        else:
            steps = [step.name for step in self.client.get_job(name).steps if step.name.startswith("node-")]
        logs = {}
        for step in steps:
            lines = []
            for line in self.client.get_job_logs(name, step=step, follow=follow):
                if follow:
                    print(line, flush=True)
                lines.append(line)
            logs[step] = "\n".join(lines)
        return logs

    def wait_for_job_conditions(
        self,
        name: str,
        namespace: str | None = None,
        job_kind: str | None = None,
        expected_conditions: Iterable[str] = frozenset({"Succeeded"}),
        wait_timeout: float = 600,
        polling_interval: float = 15,
    ) -> Job:
        """Block until the job reaches one of ``expected_conditions``; returns it.

        Raises:
            JobFailedError: it failed while another condition was expected. JobTimeoutError: ``wait_timeout`` passed.
        """
        self._check_namespace(namespace)
        unknown = sorted(set(expected_conditions) - set(CONDITIONS))
        if unknown:
            raise ConfigError(f"expected_conditions: {unknown} are not among {sorted(CONDITIONS)}")
        statuses = {CONDITIONS[condition] for condition in expected_conditions}
        return self.client.wait_for_job_status(name, statuses, timeout=wait_timeout, polling_interval=polling_interval)

    def delete_job(self, name: str, namespace: str | None = None, job_kind: str | None = None) -> None:
        """Stop the job and remove it."""
        self._check_namespace(namespace)
        self.client.delete_job(name)

    def _check_namespace(self, namespace: str | None) -> None:
        """Refuse a namespace other than the Kubernetes backend's (the local backend has none to differ)."""
        current = getattr(self.client.backend, "namespace", None)
        if namespace is not None and current is not None and namespace != current:
            raise ConfigError(
                f"namespace={namespace!r}: this client works in namespace {current!r}; "
                "create TrainingClient(namespace=..., backend='kubernetes')"
            )
