"""The typed description of a hyperparameter study, and its checks before the first trial.

A study is a base job (a job file, a :class:`~kubetune.spec.job.JobSpec` or ``train()``
arguments), a search space over LLM Trainer fields by dotted path
(``training.learning_rate: loguniform(1e-5, 1e-3)``), an objective (a metric the trials report,
or a user function) with its direction, the number of trials, how many run at once, the
sampler and the pruner. :func:`check_study` validates the search space against the trainer
config's pydantic model and the objective against what the base job reports, so a bad study
fails with one line naming the field before any trial starts.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

from kubetune.contracts.kubernetes import MAX_NAME_LENGTH
from kubetune.contracts.progress import Progress
from kubetune.errors import ConfigError
from kubetune.spec.base import StrictModel, format_validation_error, read_yaml, validate_config
from kubetune.spec.job import JobSpec, load_job_file
from kubetune.spec.trainer import LLMConfig

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CALL = re.compile(r"^\s*(loguniform|uniform|int|choice)\s*\((.*)\)\s*$", re.DOTALL)
#: The numeric values of the trainer's progress record a study can optimize (``eval_loss``...).
PROGRESS_METRICS = tuple(
    f.name
    for f in dataclasses.fields(Progress)
    if f.name not in ("step", "total_steps", "objective") and "float" in str(f.type)
)


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """Floats between ``low`` and ``high`` (both > 0), uniform on a log scale."""

    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Floats between ``low`` and ``high``; with ``step``, on that grid."""

    low: float
    high: float
    step: float | None = None


@dataclasses.dataclass(frozen=True)
class IntRange:
    """Integers from ``low`` to ``high`` (inclusive), every ``step``."""

    low: int
    high: int
    step: int = 1


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``values`` (numbers, strings, booleans or lists)."""

    values: tuple[Any, ...]


Distribution = LogUniform | Uniform | IntRange | Choice
_KINDS: dict[str, Callable[..., Distribution]] = {
    "loguniform": LogUniform,
    "uniform": Uniform,
    "int": IntRange,
    "choice": lambda values: Choice(tuple(values)),
}


def describe(distribution: Distribution) -> str:
    """The distribution as written in a study file: ``loguniform(1e-05, 0.001)``."""
    if isinstance(distribution, Choice):
        return f"choice({list(distribution.values)!r})"
    name = {LogUniform: "loguniform", Uniform: "uniform", IntRange: "int"}[type(distribution)]
    args = [distribution.low, distribution.high]
    if getattr(distribution, "step", None) not in (None, 1):
        args.append(distribution.step)
    return f"{name}({', '.join(repr(a) for a in args)})"


def parse_distribution(value: Any, field: str) -> Distribution:
    """A distribution from its written form (``"loguniform(1e-5, 1e-3)"``, ``"choice([8, 16])"``), a
    mapping (``{"type": "int", "low": 1, "high": 3}``) or a distribution object.

    Raises:
        ConfigError: naming ``field``: an unknown kind, arguments that do not fit it, low > high,
            loguniform bounds <= 0, an empty choice.
    """
    if isinstance(value, LogUniform | Uniform | IntRange | Choice):
        distribution = value
    else:
        kind, args, kwargs = _written_form(value, field)
        try:
            distribution = _KINDS[kind](*args, **kwargs)
        except TypeError as err:
            raise ConfigError(f"{field}: bad arguments for {kind}(): {err}") from None
    _check_bounds(distribution, field)
    return distribution


def _written_form(value: Any, field: str) -> tuple[str, tuple, dict]:
    if isinstance(value, str):
        match = _CALL.match(value)
        if match is None:
            raise ConfigError(
                f"{field}: {value!r} is not a distribution; write loguniform(low, high), uniform(low, high), "
                "int(low, high) or choice([a, b, ...])"
            )
        kind, body = match.groups()
        try:
            call = ast.parse(f"f({body})", mode="eval").body
            args = tuple(ast.literal_eval(arg) for arg in call.args)
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError):
            raise ConfigError(f"{field}: cannot read the arguments of {value!r} (numbers, strings or lists)") from None
        return kind, args, kwargs
    if isinstance(value, Mapping):
        data = dict(value)
        kind = data.pop("type", None)
        if kind not in _KINDS:
            raise ConfigError(f"{field}.type: {kind!r} is not one of {', '.join(_KINDS)}")
        return kind, (), data
    raise ConfigError(f"{field}: expected a distribution such as loguniform(1e-5, 1e-3), got {value!r}")


def _check_bounds(distribution: Distribution, field: str) -> None:
    if isinstance(distribution, Choice):
        if not distribution.values:
            raise ConfigError(f"{field}: choice() needs at least one value")
        return
    numbers = (int,) if isinstance(distribution, IntRange) else (int, float)
    for name in ("low", "high", "step"):
        bound = getattr(distribution, name, None)
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, numbers) or not math.isfinite(bound)
        ):
            kind = "an integer" if isinstance(distribution, IntRange) else "a finite number"
            raise ConfigError(f"{field}: {name} must be {kind} (got {bound!r})")
    if distribution.low > distribution.high:
        raise ConfigError(f"{field}: low {distribution.low!r} is greater than high {distribution.high!r}")
    if isinstance(distribution, LogUniform) and distribution.low <= 0:
        raise ConfigError(f"{field}: loguniform needs low > 0 (got {distribution.low!r})")
    step = getattr(distribution, "step", None)
    if step is not None and step <= 0:
        raise ConfigError(f"{field}: step must be > 0 (got {step!r})")


class ObjectiveSpec(StrictModel):
    """What a trial is scored by: a metric of its progress records, or a user function."""

    metric: str = Field(
        default="eval_loss",
        description="A value of the trial's progress records (metrics.jsonl): eval_loss, loss, or an objective- "
        "or evaluation-specific value; its last value is the trial's score, its earlier values feed the pruner.",
    )
    direction: Literal["minimize", "maximize"] = "minimize"
    function: str | None = Field(
        default=None,
        description="Import path 'module:function' called with the finished trial's Job; returns the score.",
    )

    @field_validator("function")
    @classmethod
    def _import_path(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[\w.]+:[\w.]+$", value):
            raise ValueError("must look like 'package.module:function'")
        return value


class SamplerSpec(StrictModel):
    """How trial parameters are chosen (Optuna samplers)."""

    type: Literal["tpe", "random", "grid"] = "tpe"
    seed: int | None = None


class MedianPrunerSpec(StrictModel):
    """Stop a trial whose intermediate value is worse than the median of earlier trials at that step."""

    type: Literal["median"] = "median"
    n_startup_trials: int = Field(default=5, ge=0, description="Trials that finish before any is pruned.")
    n_warmup_steps: int = Field(default=0, ge=0, description="Steps of a trial before it may be pruned.")
    interval_steps: int = Field(default=1, ge=1)


class SuccessiveHalvingPrunerSpec(StrictModel):
    """Asynchronous successive halving: keep the best 1/reduction_factor of the trials at each rung."""

    type: Literal["successive_halving"] = "successive_halving"
    min_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(default=4, ge=2)
    min_early_stopping_rate: int = Field(default=0, ge=0)


PrunerSpec = Annotated[MedianPrunerSpec | SuccessiveHalvingPrunerSpec, Field(discriminator="type")]


class StudySpec(StrictModel):
    """A hyperparameter study: a base job, a search space, an objective and how to run the trials."""

    name: str = Field(description="Study name; trials are jobs named '<name>-<n>'.")
    job: JobSpec = Field(description="The base job every trial starts from (its name is replaced).")
    search_space: dict[str, Any] = Field(
        description="Trainer field by dotted path -> distribution: loguniform(a, b), uniform(a, b), int(a, b), "
        "choice([...]).",
        min_length=1,
    )
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    n_trials: int = Field(default=10, ge=1, description="Trials the study runs in all, across resumes.")
    parallel: int = Field(default=1, ge=1, description="Trials at once (capped by what the backend can run).")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be a lowercase DNS label: a-z, 0-9 and '-'")
        return value


def load_study_file(path: str | Path) -> StudySpec:
    """Read a study YAML file; ``job`` is a job file path (relative to the study file) or a job mapping.

    Raises:
        ConfigError: the file or its job file is missing or invalid (one line naming the field).
    """
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a study file is a mapping with name, job, search_space...")
    job = data.get("job")
    if isinstance(job, str):
        job_path = Path(job).expanduser()
        data = {**data, "job": load_job_file(job_path if job_path.is_absolute() else path.parent / job_path)}
    return validate_config(StudySpec, data, source=f"study file {path}")


@dataclasses.dataclass(frozen=True)
class CheckedStudy:
    """A study whose every part was checked: its parsed search space and objective function."""

    spec: StudySpec
    space: dict[str, Distribution]
    function: Callable[..., float] | None


def check_study(spec: StudySpec) -> CheckedStudy:
    """Validate the study before its first trial.

    Each search-space path must name a trainer field; each distribution's values must be ones
    the field takes (``choice(["a"])`` for a float field fails, so does ``uniform`` for an int
    field) and the trainer config with them must still validate; the objective must be
    something the trials report.

    Raises:
        ConfigError: one line naming the field.
    """
    space = {}
    base = spec.job.trainer.model_dump(mode="json", exclude_unset=True)
    for path, value in spec.search_space.items():
        field = f"search_space.{path}"
        distribution = parse_distribution(value, field)
        _check_field(path, distribution, base, field)
        space[path] = distribution
    if spec.sampler.type == "grid":
        for path, distribution in space.items():
            if isinstance(distribution, LogUniform | Uniform) and getattr(distribution, "step", None) is None:
                raise ConfigError(
                    f"search_space.{path}: the grid sampler needs choice() or int() (or uniform with a step)"
                )
    widest = spec.n_trials - 1
    if len(f"{spec.name}-{widest}") > MAX_NAME_LENGTH:
        raise ConfigError(
            f"name: {spec.name!r} is too long: trial jobs '{spec.name}-{widest}' must fit {MAX_NAME_LENGTH} characters"
        )
    function = _objective_function(spec.objective.function) if spec.objective.function else None
    _check_metric(spec, function is not None)
    return CheckedStudy(spec, space, function)


def set_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``data`` (nested mappings) with the dotted ``path`` set to ``value``; ``data`` is not changed."""
    head, _, rest = path.partition(".")
    out = dict(data)
    if rest:
        inner = out.get(head)
        out[head] = set_path(inner if isinstance(inner, dict) else {}, rest, value)
    else:
        out[head] = value
    return out


def trainer_with(base: dict[str, Any], params: Mapping[str, Any]) -> LLMConfig:
    """The trainer config ``base`` (fields the user set) with each dotted path of ``params`` set.

    Raises:
        ConfigError: the combination does not validate (naming the field).
    """
    data = base
    for path, value in params.items():
        data = set_path(data, path, value)
    try:
        return LLMConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid trial config: {format_validation_error(err, 'trainer')}") from None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``LoraConfig | None`` -> LoraConfig), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        models = [m for m in map(_model_of, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def _check_field(path: str, distribution: Distribution, base: dict[str, Any], field: str) -> None:
    model: type[BaseModel] = LLMConfig
    walked = "trainer"
    parts = path.split(".")
    for depth, part in enumerate(parts):
        info = model.model_fields.get(part)
        if info is None:
            known = ", ".join(sorted(model.model_fields))
            raise ConfigError(f"{field}: {walked} has no field {part!r} (fields: {known})")
        walked = f"{walked}.{part}"
        if depth < len(parts) - 1:
            inner = _model_of(info.annotation)
            if inner is None:
                raise ConfigError(f"{field}: {walked} is a value, not a section with fields")
            model = inner
    if _model_of(info.annotation) is not None:
        raise ConfigError(f"{field}: {walked} is a section; search one of its fields")
    adapter = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)
    candidates = (
        distribution.values
        if isinstance(distribution, Choice)
        else (distribution.low, distribution.high)
        if isinstance(distribution, IntRange)
        else (float(distribution.low), float(distribution.high))
    )
    for candidate in candidates:
        try:
            adapter.validate_python(candidate, strict=True)
        except ValidationError as err:
            problem = err.errors()[0]["msg"]
            raise ConfigError(
                f"{field}: {describe(distribution)} gives {candidate!r}, which {walked} does not take: {problem}"
            ) from None
        try:
            trainer_with(base, {path: candidate})
        except ConfigError as err:
            raise ConfigError(f"{field}: with {candidate!r}: {err}") from None


def _objective_function(path: str) -> Callable[..., float]:
    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"objective.function: cannot import {path!r}: {err}") from None
    if not callable(target):
        raise ConfigError(f"objective.function: {path!r} is not callable")
    return target


def _check_metric(spec: StudySpec, has_function: bool) -> None:
    metric = spec.objective.metric
    job = spec.job
    if job.trainer_kind == "custom":
        if not has_function:
            raise ConfigError("objective.function: a custom-trainer job reports no metrics; score it with a function")
        if spec.pruner is not None:
            raise ConfigError("pruner: a custom-trainer job reports no intermediate metrics to prune on")
        return
    trainer = job.trainer
    if metric == "eval_loss":
        searched_split = "dataset.eval_fraction" in spec.search_space
        if trainer.dataset.eval_fraction == 0 and not searched_split:
            raise ConfigError(
                "objective.metric: eval_loss is reported only with an eval split; set the job's "
                "trainer.dataset.eval_fraction (e.g. 0.2)"
            )
        if spec.pruner is not None and trainer.training.eval_every is None:
            raise ConfigError(
                "pruner: pruning on eval_loss needs intermediate evaluations; set the job's trainer.training.eval_every"
            )
        return
    if metric in PROGRESS_METRICS:
        return
    evaluated = _evaluation_metrics(trainer)
    if metric in evaluated:
        if spec.pruner is not None and trainer.evaluation.every_n_steps is None:
            raise ConfigError(
                f"pruner: pruning on {metric} needs intermediate evaluations; set the job's "
                "trainer.evaluation.every_n_steps"
            )
        return
    if trainer.objective == "sft":  # a preference objective's own values are checked when a trial ends
        reported = [*PROGRESS_METRICS, *evaluated]
        raise ConfigError(
            f"objective.metric: {metric!r} is not reported by this job's trainer (it reports {', '.join(reported)})"
        )


def _evaluation_metrics(trainer: LLMConfig) -> list[str]:
    """The scores the job's ``evaluation:`` section writes into its progress records (none without one)."""
    from kubetune.spec.evaluation import default_metrics

    evaluation = trainer.evaluation
    if evaluation is None:
        return []
    return list(evaluation.metrics or default_metrics(evaluation.format or trainer.dataset.format))
