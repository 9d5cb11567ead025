"""``TrainerClient``: the one entry point for data scientists, a thin facade over a backend."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from kubetune.contracts.evaluation import EvalComparison, EvalReport
from kubetune.contracts.progress import Progress
from kubetune.contracts.types import (
    BuiltinTrainer,
    CustomTrainer,
    Event,
    Initializer,
    Job,
    JobOutputs,
    JobStatus,
)
from kubetune.errors import ConfigError, JobExistsError, JobNotFoundError, ModelError
from kubetune.runtimes import Runtime
from kubetune.spec.base import format_validation_error
from kubetune.spec.evaluation import EvaluationConfig
from kubetune.spec.job import JobSpec, canonical_resources
from kubetune.spec.trainer import LLMConfig

if TYPE_CHECKING:  # a backend is imported when chosen (kubernetes needs its client library)
    from kubetune.backends.base import RuntimeBackend
    from kubetune.trainer.evaluation.models import ModelTarget


class TrainerClient:
    """Submit and watch fine-tuning jobs; the same calls work on every backend.

    Args:
        backend: where jobs run: ``"local"`` (the default; a
            :class:`~kubetune.backends.local.LocalBackend` with its data in ``$KUBETUNE_HOME`` or
            ``~/.kubetune``), ``"kubernetes"`` (a
            :class:`~kubetune.backends.kubernetes.KubernetesBackend` on the current kubeconfig
            context), or a configured backend instance.
        backend_options: keyword arguments of the backend named by ``backend`` (``home=`` for
            local; ``namespace=``, ``context=``... for kubernetes).
    """

    def __init__(self, backend: RuntimeBackend | str = "local", **backend_options: Any):
        if backend == "local":
            from kubetune.backends.local import LocalBackend

            backend = LocalBackend(**backend_options)
        elif backend == "kubernetes":
            from kubetune.backends.kubernetes import KubernetesBackend

            backend = KubernetesBackend(**backend_options)
        elif isinstance(backend, str):
            raise ConfigError(f"backend: {backend!r} is not 'local', 'kubernetes' or a RuntimeBackend instance")
        elif backend_options:
            raise ConfigError("backend options are for a backend named by string; configure the instance instead")
        self.backend = backend

    def train(
        self,
        runtime: str | Runtime | None = None,
        initializer: Initializer | None = None,
        trainer: BuiltinTrainer | CustomTrainer | None = None,
        options: Iterable[JobOption] | None = None,
    ) -> str:
        """Start a training job and return its name; the job runs detached.

        Args:
            runtime: a runtime name from :meth:`list_runtimes` (or the Runtime itself).
            initializer: model and dataset to fetch into the run directory first.
            trainer: :class:`BuiltinTrainer` (the LLM Trainer) or :class:`CustomTrainer` (a function).
            options: :class:`Name`, :class:`RunDirectory`...

        Raises:
            ConfigError: an invalid field (trainer config, num_nodes < 1, unknown runtime, GPUs this
                backend cannot give...). JobExistsError: the name is taken. Nothing is started.
        """
        return self.backend.submit(self.job_spec(runtime, initializer, trainer, options))

    def job_spec(
        self,
        runtime: str | Runtime | None = None,
        initializer: Initializer | None = None,
        trainer: BuiltinTrainer | CustomTrainer | None = None,
        options: Iterable[JobOption] | None = None,
    ) -> JobSpec:
        """The validated :class:`JobSpec` :meth:`train` would submit for these arguments (nothing starts).

        Raises:
            ConfigError: an invalid field.
        """
        fields: dict[str, Any] = {}
        if runtime is not None:
            fields["runtime"] = runtime.name if isinstance(runtime, Runtime) else runtime
        if initializer is not None:
            fields["initializer"] = {"model": initializer.model, "dataset": initializer.dataset}
        if trainer is not None:
            fields.update(_trainer_fields(trainer))
        for option in options or ():
            option(fields, self.backend)
        fields.setdefault("name", _generated_name())
        try:
            return JobSpec.model_validate(fields)
        except ValidationError as err:
            raise ConfigError(f"invalid job: {format_validation_error(err)}") from None

    def train_from_spec(self, spec: JobSpec, replace: bool = False) -> str:
        """Start a job from a complete :class:`JobSpec` (what ``kubetune train -f`` does); returns its name.

        A spec without a name gets a generated one. With ``replace``, :meth:`prepare_replacement`
        runs first. Raises like :meth:`train`.
        """
        if spec.name is None:
            spec = spec.model_copy(update={"name": _generated_name()})
        if replace:
            self.prepare_replacement(spec)
        return self.backend.submit(spec)

    def prepare_replacement(self, spec: JobSpec) -> str | None:
        """Make way for ``spec`` to run again under its name, losing nothing.

        The outputs already in its run directory are moved aside (local backend:
        ``output.prev-<UTC time>/``), then a finished job of that name is deleted (its files
        stay). Returns where the earlier outputs went (``None``: there were none).

        Raises:
            JobExistsError: the job of that name is still running. ConfigError: the outputs
                cannot be moved (Kubernetes keeps them on the job's volume).
        """
        if spec.name is None:
            return None
        try:
            job = self.backend.get_job(spec.name)
        except JobNotFoundError:
            job = None
        if job is not None and not job.status.is_terminal:
            raise JobExistsError(
                f"job {spec.name!r} is still {job.status.value}; wait for it or `kubetune delete {spec.name}`"
            )
        moved = self.backend.set_aside_outputs(spec)
        if job is not None:
            self.backend.delete_job(spec.name)
        return moved

    def list_runtimes(self) -> list[Runtime]:
        """The runtimes this backend offers."""
        return self.backend.list_runtimes()

    def get_runtime(self, name: str) -> Runtime:
        """One runtime. Raises ConfigError listing the known ones if ``name`` is not one."""
        return self.backend.get_runtime(name)

    def list_jobs(self) -> list[Job]:
        """Every job, oldest first."""
        return self.backend.list_jobs()

    def get_job(self, name: str) -> Job:
        """A job's status, steps and training progress. Raises JobNotFoundError."""
        return self.backend.get_job(name)

    def get_job_logs(self, name: str, step: str = "node-0", follow: bool = False) -> Iterator[str]:
        """Log lines of one step (``model-initializer``, ``dataset-initializer``, ``node-0``...).

        With ``follow``, keeps yielding new lines until the job ends.
        """
        return self.backend.get_job_logs(name, step=step, follow=follow)

    def get_job_events(self, name: str) -> list[Event]:
        """What happened to the job, in order."""
        return self.backend.get_job_events(name)

    def get_job_metrics(self, name: str) -> list[Progress]:
        """The job's progress records so far (loss, eval loss, lr, grad norm, tokens/s per logged step), oldest first.

        The local backend returns every step; the Kubernetes backend only the newest record
        (the TrainJob's ``status.trainingProgress``).
        """
        return self.backend.get_job_metrics(name)

    def get_job_config(self, name: str) -> dict[str, Any] | None:
        """The job's resolved spec as data (secrets only as references); None where the backend cannot read it."""
        return self.backend.get_job_config(name)

    def cancel_job(self, name: str) -> None:
        """Stop an active job without a checkpoint; it ends Cancelled and its record, logs and outputs stay.

        Raises:
            JobNotFoundError. ConfigError: the job already ended, or the backend cannot cancel
            (Kubernetes: suspend or delete the TrainJob).
        """
        self.backend.cancel_job(name)

    def get_job_return_values(self, name: str) -> dict[int, Any]:
        """A custom-trainer job's return value on each rank, by global rank."""
        return self.backend.get_job_return_values(name)

    def wait_for_job_status(
        self,
        name: str,
        status: set[JobStatus] | JobStatus = JobStatus.COMPLETE,
        timeout: float | None = None,
        polling_interval: float = 1.0,
    ) -> Job:
        """Block until the job reaches ``status`` and return it; ``timeout=None`` (default) waits as long as it runs.

        Raises:
            JobFailedError: it ended otherwise (Failed, Cancelled...). JobTimeoutError: ``timeout`` passed.
        """
        wanted = {status} if isinstance(status, JobStatus) else set(status)
        return self.backend.wait_for_job_status(name, wanted, timeout=timeout, polling_interval=polling_interval)

    def suspend_job(self, name: str, wait: bool = True, timeout: float = 600.0) -> Job:
        """Stop a running job keeping its work, and return it.

        The workers finish their current step, write a checkpoint and exit; the job becomes
        Suspended (on Kubernetes: ``spec.suspend`` of the TrainJob, so its pods checkpoint on the
        shared volume within their grace period). :meth:`resume_job` continues it. With ``wait``,
        blocks until the job is Suspended (or Complete, if it finished first).

        Raises:
            JobNotFoundError. ConfigError: the job has already ended. JobTimeoutError.
        """
        self.backend.suspend_job(name)
        if not wait:
            return self.backend.get_job(name)
        return self.backend.wait_for_job_status(
            name, {JobStatus.SUSPENDED, JobStatus.COMPLETE}, timeout=timeout, polling_interval=0.5
        )

    def resume_job(self, name: str) -> Job:
        """Start a Suspended job again from its newest checkpoint, and return it.

        The local backend also resumes a Failed or Cancelled job, e.g. one whose supervisor died
        with the machine: finished initializers are kept and training continues from the newest
        complete checkpoint.

        Raises:
            JobNotFoundError. ConfigError: the job is active or Complete.
        """
        self.backend.resume_job(name)
        return self.backend.get_job(name)

    def get_job_outputs(self, name: str) -> JobOutputs:
        """Where the job's outputs are kept (run directory or volume) and how much space they take."""
        return self.backend.get_job_outputs(name)

    def resolve_model(
        self, model: str | Path, adapter: str | Path | None = None, base: str | Path | None = None
    ) -> ModelTarget:
        """Which model ``model`` stands for, checked by its files (nothing is loaded).

        Args:
            model: a job name (its merged model, else its adapter on its base), a run directory or
                ``output/`` folder, a model folder or ``.gguf`` file, or an adapter folder.
            adapter: a PEFT adapter folder to put on ``model`` (then ``model`` is the base).
            base: the base model of an adapter whose ``adapter_config.json`` names none on this machine.

        Raises:
            ModelError: one line naming the path (or job) that is not a model. JobNotFoundError never:
                an unknown name that is not a path is a ModelError.
        """
        from kubetune.trainer.evaluation.models import resolve_model

        label = str(model)
        path = Path(model).expanduser()
        if not path.exists():
            try:
                job = self.backend.get_job(label)
            except JobNotFoundError:
                raise ModelError(f"{label}: neither a model path nor a job of this backend") from None
            if job.run_dir is None or not job.run_dir.is_dir():
                where = ", ".join(self.backend.get_job_outputs(label).locations) or "nowhere yet"
                raise ModelError(f"job {label!r}: its outputs are not on this machine ({where}); copy them here")
            path = job.run_dir
        return resolve_model(
            path,
            adapter=None if adapter is None else Path(adapter).expanduser(),
            base=None if base is None else Path(base).expanduser(),
            label=label,
        )

    def evaluate(
        self,
        model: str | Path,
        file: str | Path,
        *,
        adapter: str | Path | None = None,
        base: str | Path | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        **settings: Any,
    ) -> EvalReport:
        """Score a model on a held-out file by batched greedy generation (or a classifier's classes).

        Prompts are rendered exactly as training rendered them (the format's prompt template or the
        model's chat template); when ``model`` is a job, its dataset settings (format, column map,
        labels) read the file. Without a job and a ``format``, the file's columns tell the format.

        Args:
            model, adapter, base: the model, as :meth:`resolve_model` takes it.
            file: the held-out file (json, jsonl, csv, parquet) in one of the trainer's formats.
            on_progress: called with (rows done, rows in all) as answers come in.
            settings: ``format``, ``metrics``, ``max_new_tokens`` (32), ``batch_size`` (8),
                ``max_samples``: as the job's ``evaluation:`` section
                (:class:`~kubetune.spec.evaluation.EvaluationConfig`).

        Returns:
            The report: scores 0..1 per metric, and every row's prompt, reference and answer.

        Raises:
            ConfigError, DataError, ModelError: one line naming the setting, file or path, raised
                before any model is loaded.
        """
        from kubetune.trainer.evaluation.run import checked_inputs, evaluate_target, job_dataset

        evaluation = EvaluationConfig(file=str(file), **settings)
        target = self.resolve_model(model, adapter, base)
        dataset = job_dataset(target)
        checked_inputs(evaluation, dataset)
        return evaluate_target(target, evaluation, dataset, on_progress)

    def compare_models(
        self,
        model: str | Path,
        base: str | Path,
        file: str | Path,
        *,
        adapter: str | Path | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
        **settings: Any,
    ) -> EvalComparison:
        """Score ``base`` and the fine-tuned ``model`` (with ``adapter``, if given, on it) on the same
        file, one after the other; both read the file with the fine-tuned job's dataset settings.

        ``settings`` are those of :meth:`evaluate`; ``on_progress(label, done, total)`` follows each
        model. Bad input of either model or of the file fails before any model is loaded.
        """
        from kubetune.trainer.evaluation.run import checked_inputs, evaluate_target, job_dataset

        evaluation = EvaluationConfig(file=str(file), **settings)
        tuned = self.resolve_model(model, adapter)
        before = self.resolve_model(base)
        dataset = job_dataset(tuned)
        _, evaluation, dataset = checked_inputs(evaluation, dataset)
        reports = []
        for target in (before, tuned):
            follow = None if on_progress is None else (lambda done, total, t=target: on_progress(t.label, done, total))
            reports.append(evaluate_target(target, evaluation, dataset, follow))
        return EvalComparison(*reports)

    def generate(
        self,
        model: str | Path,
        prompt: str,
        *,
        adapter: str | Path | None = None,
        base: str | Path | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """One reply of the model to ``prompt`` (a user message rendered with its chat template;
        plain text for a model without one): greedy, or sampled with ``temperature``/``top_p``/``seed``.

        Raises:
            ModelError: the path or job is not a model (before loading anything).
        """
        from kubetune.trainer.evaluation.generation import Sampling, chat_prompt_ids, stream_reply
        from kubetune.trainer.evaluation.models import load_target

        sampling = _sampling(max_new_tokens, temperature, top_p, seed)
        loaded, tokenizer = load_target(self.resolve_model(model, adapter, base))
        ids = chat_prompt_ids(tokenizer, [{"role": "user", "content": prompt}])
        return "".join(stream_reply(loaded, tokenizer, ids, max_new_tokens, Sampling(**sampling))).strip()

    def delete_job(self, name: str, purge: bool = False) -> None:
        """Stop the job's processes and remove its state. Its outputs (trained model, checkpoints,
        metrics) stay where they are, unless ``purge``: then :meth:`get_job_outputs` lists what goes."""
        self.backend.delete_job(name, purge=purge)


class JobOption:
    """An option of :meth:`TrainerClient.train`: edits the job's fields, checking the backend supports it."""

    def __call__(self, fields: dict[str, Any], backend: RuntimeBackend) -> None:
        raise NotImplementedError


class Name(JobOption):
    """Name the job (a lowercase DNS label) instead of generating one."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, fields: dict[str, Any], backend: RuntimeBackend) -> None:
        fields["name"] = self.name


class MaxRestarts(JobOption):
    """Restart a failed job's workers up to ``count`` times; each restart resumes from the newest checkpoint."""

    def __init__(self, count: int):
        self.count = count

    def __call__(self, fields: dict[str, Any], backend: RuntimeBackend) -> None:
        fields["max_restarts"] = self.count


class RunDirectory(JobOption):
    """Put the run directory (model/, dataset/, output/) at ``path``; local backend only."""

    def __init__(self, path: str):
        self.path = str(path)

    def __call__(self, fields: dict[str, Any], backend: RuntimeBackend) -> None:
        from kubetune.backends.local import LocalBackend

        if not isinstance(backend, LocalBackend):
            raise ConfigError(f"RunDirectory is an option of the local backend, not {type(backend).__name__}")
        fields["output_dir"] = self.path


def _sampling(max_new_tokens: int, temperature: float, top_p: float, seed: int | None) -> dict[str, Any]:
    """The sampling settings, checked: one line naming the bad one."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens: must be 1 or more (got {max_new_tokens})")
    if temperature < 0:
        raise ConfigError(f"temperature: must be 0 (greedy) or more (got {temperature})")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p: must be in (0, 1] (got {top_p})")
    return {"temperature": temperature, "top_p": top_p, "seed": seed}


def _generated_name() -> str:
    return f"job-{secrets.token_hex(4)}"


def _gpu_count(value: Any) -> int | None:
    """A positive GPU count given as a number or a string ("2"), else None (validation reports bad values)."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        return None
    return count if count > 0 else None


def _trainer_fields(trainer: BuiltinTrainer | CustomTrainer) -> dict[str, Any]:
    """The job-spec fields a trainer sets; what it leaves out, a runtime may fill (so unset stays unset)."""
    fields: dict[str, Any] = {}
    try:
        resources = canonical_resources(dict(trainer.resources_per_node or {}))
    except ValueError as err:
        raise ConfigError(f"resources_per_node: {err}") from None
    procs = trainer.procs_per_node if trainer.procs_per_node is not None else _gpu_count(resources.get("gpu"))
    for key, value in (("num_nodes", trainer.num_nodes), ("procs_per_node", procs)):
        if value is not None:
            fields[key] = value
    if resources:
        fields["resources"] = resources
    if trainer.env:
        fields["env"] = dict(trainer.env)
    if isinstance(trainer, BuiltinTrainer):
        config = trainer.config
        try:
            config = LLMConfig.model_validate(
                config.model_dump(exclude_unset=True) if isinstance(config, LLMConfig) else config
            )
        except ValidationError as err:
            raise ConfigError(f"invalid trainer config: {format_validation_error(err, 'trainer')}") from None
        fields.update(trainer_kind="builtin", trainer=config)
    elif isinstance(trainer, CustomTrainer):
        from kubetune.backends.function_worker import pack_function

        try:
            function = pack_function(trainer.func, dict(trainer.func_args or {}))
        except Exception as err:
            raise ConfigError(f"trainer.func: cannot ship the function by value: {err}") from None
        fields.update(trainer_kind="custom", function=function)
    else:
        raise ConfigError(f"trainer: expected BuiltinTrainer or CustomTrainer, got {type(trainer).__name__}")
    return fields
