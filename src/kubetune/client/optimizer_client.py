"""``OptimizerClient``: hyperparameter search as a study of ordinary training jobs, on any backend.

Optuna chooses each trial's parameters (TPE by default, random or grid) and decides which
trials to stop early (median or successive-halving pruning); kubetune runs every trial as a job
of the chosen backend named ``<study>-<n>`` (a local process tree or a TrainJob), feeds the
pruner the trial's progress records as they appear, cancels a pruned trial's job through the
backend, and scores a finished trial by its last value of the objective metric (or a user
function). The study lives in an SQLite Optuna storage under the kubetune home
(``studies.db``), so it outlives the process that runs it: running the same study again resumes
it, adopting trials whose jobs are still running and never repeating finished ones.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.client.study_spec import (
    CheckedStudy,
    Choice,
    Distribution,
    IntRange,
    LogUniform,
    MedianPrunerSpec,
    ObjectiveSpec,
    StudySpec,
    Uniform,
    check_study,
    describe,
    load_study_file,
    trainer_with,
)
from kubetune.client.trainer_client import TrainerClient
from kubetune.contracts.run_dir import LocalHome
from kubetune.contracts.types import BuiltinTrainer, CustomTrainer, Initializer, Job, JobStatus
from kubetune.errors import ConfigError, JobNotFoundError, KubetuneError
from kubetune.spec.base import format_validation_error
from kubetune.spec.job import JobSpec

if TYPE_CHECKING:
    import optuna

    from kubetune.backends.base import RuntimeBackend

# Trial user attributes in the Optuna storage (the contract between a study run and its resumes).
JOB_ATTR = "job"
OUTPUT_ATTR = "output"
REASON_ATTR = "reason"
MESSAGE_ATTR = "message"
DEFINITION_ATTR = "definition"  # a study's user attribute: what must not change across resumes
NOT_SUBMITTED = "NotSubmitted"
PRUNED_REASON = "Pruned"


@dataclass
class TrialResult:
    """One trial of a study.

    Attributes:
        number: the trial's number (0-based); its job is ``<study>-<number>``.
        job: the job's name.
        status: ``complete``, ``pruned``, ``failed`` or ``running``.
        params: the searched values, by dotted trainer path.
        value: the objective (None unless complete).
        last_step: the last step whose metric the pruner saw, and ``last_value`` that value.
        duration_s: seconds from asking for the trial to its end (None while running).
        reason: why a pruned or failed trial ended (``Pruned``, the job's failure reason), with ``message``.
        output: the job's output folder (local) or volume (Kubernetes).
    """

    number: int
    job: str | None
    status: str
    params: dict[str, Any]
    value: float | None
    last_step: int | None = None
    last_value: float | None = None
    duration_s: float | None = None
    reason: str | None = None
    message: str | None = None
    output: str | None = None


@dataclass
class StudyResult:
    """A study as stored: its trials, the best one and the plot next to it."""

    name: str
    metric: str
    direction: str
    n_trials: int
    search_space: dict[str, str]
    trials: list[TrialResult] = field(default_factory=list)
    best: TrialResult | None = None
    plot: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (what ``kubetune study --json`` prints)."""
        data = asdict(self)
        data["plot"] = None if self.plot is None else str(self.plot)
        return data


class OptimizerClient:
    """Run hyperparameter studies whose trials are training jobs of a backend.

    Args:
        backend: ``"local"`` (default), ``"kubernetes"`` or a backend instance, as for
            :class:`~kubetune.client.TrainerClient`.
        home: where the study storage (``studies.db``) and plots live: the local backend's data
            directory by default (``$KUBETUNE_HOME`` or ``~/.kubetune``), for every backend.
        backend_options: options of the backend named by ``backend``.
    """

    def __init__(self, backend: RuntimeBackend | str = "local", home: str | Path | None = None, **backend_options: Any):
        if backend == "local" and home is not None:
            backend_options["home"] = home
        self.trainer_client = TrainerClient(backend, **backend_options)
        self.backend = self.trainer_client.backend
        if home is None:
            from kubetune.backends.local.backend import default_home

            home = getattr(self.backend, "home", None) or default_home()
        self.layout = LocalHome(Path(home).expanduser().resolve())
        self._opened_storage: optuna.storages.RDBStorage | None = None

    def optimize(
        self,
        study: StudySpec | str | Path | Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        job: JobSpec | str | Path | None = None,
        runtime: str | None = None,
        initializer: Initializer | None = None,
        trainer: BuiltinTrainer | CustomTrainer | None = None,
        search_space: Mapping[str, Any] | None = None,
        objective: str | ObjectiveSpec | Mapping[str, Any] = "eval_loss",
        direction: str = "minimize",
        n_trials: int = 10,
        parallel: int = 1,
        sampler: str | Mapping[str, Any] = "tpe",
        pruner: str | Mapping[str, Any] | None = None,
        progress: Callable[[str], None] | None = None,
        polling_interval: float = 0.5,
    ) -> StudyResult:
        """Run (or resume) a study until it has ``n_trials`` trials, and return it.

        Give either ``study`` (a :class:`StudySpec`, its mapping, or a study YAML path) or the
        parts: ``name``, a base job (``job``: a JobSpec or job file; or ``runtime``/``initializer``/
        ``trainer`` as for :meth:`TrainerClient.train`), ``search_space`` (dotted trainer path ->
        ``"loguniform(1e-5, 1e-3)"``, ``"uniform(a, b)"``, ``"int(1, 3)"``, ``"choice([8, 16])"``
        or a distribution object), ``objective`` (a metric name, or ``{"function":
        "module:fn"}``), ``direction``, ``sampler`` (``tpe``, ``random``, ``grid``, or
        ``{"type": ..., "seed": ...}``) and ``pruner`` (``median``, ``successive_halving`` or
        their options). ``progress`` receives one line per trial event; the running trials'
        jobs are read every ``polling_interval`` seconds.

        A study of the same name continues: finished trials are kept, trials whose jobs are
        still running are followed to their end, and only the missing trials are started.

        Raises:
            ConfigError: a bad study (unknown field path, low > high, a value the field cannot
                take, a metric the trials do not report...), checked before the first trial; a
                stored study of that name with another definition; the first trial that cannot
                be submitted.
        """
        if study is None:
            study = self._spec_from_parts(
                name,
                job,
                runtime,
                initializer,
                trainer,
                search_space,
                objective,
                direction,
                n_trials,
                parallel,
                sampler,
                pruner,
            )
        elif isinstance(study, str | Path):
            study = load_study_file(study)
        elif isinstance(study, Mapping):
            study = _validated(dict(study))
        checked = check_study(study)
        return _StudyRun(self, checked, progress or (lambda line: None), polling_interval).run()

    def get_study(self, name: str, plot: bool = True) -> StudyResult:
        """The study ``name`` as stored: trials (params, objective, status, duration, reason), the
        best trial and its output folder; with ``plot``, (re)draws ``history.png`` next to the study.

        Raises:
            ConfigError: there is no study of that name in this home.
        """
        import optuna

        storage = self._storage()
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            known = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
            raise ConfigError(f"no study named {name!r} in {self.layout.studies_db} (studies: {known})") from None
        result = _result(study)
        if plot and result.trials:
            result.plot = _draw_plot(result, self.layout.study_plot(name))
        return result

    def list_studies(self) -> list[str]:
        """The names of the studies stored in this home."""
        import optuna

        if not self.layout.studies_db.exists():
            return []
        return [s.study_name for s in optuna.get_all_study_summaries(self._storage())]

    def _storage(self) -> optuna.storages.RDBStorage:
        """The study storage, opened once per client (opening checks the schema, about a second)."""
        import optuna

        if self._opened_storage is None:
            self.layout.root.mkdir(parents=True, exist_ok=True)
            self._opened_storage = optuna.storages.RDBStorage(
                f"sqlite:///{self.layout.studies_db}", engine_kwargs={"connect_args": {"timeout": 60}}
            )
        return self._opened_storage

    def _spec_from_parts(
        self,
        name,
        job,
        runtime,
        initializer,
        trainer,
        search_space,
        objective,
        direction,
        n_trials,
        parallel,
        sampler,
        pruner,
    ) -> StudySpec:
        if name is None or search_space is None:
            raise ConfigError("optimize: give a study (spec or file), or name= and search_space= with a base job")
        if isinstance(job, str | Path):
            from kubetune.spec.job import load_job_file

            job = load_job_file(job)
        elif job is None:
            if trainer is None and runtime is None:
                raise ConfigError("job: give a job (JobSpec or job file) or trainer=/runtime= for the base job")
            job = self.trainer_client.job_spec(runtime=runtime, initializer=initializer, trainer=trainer)
        objective = {"metric": objective} if isinstance(objective, str) else objective
        if isinstance(objective, ObjectiveSpec):
            objective = objective.model_dump(exclude_unset=True)
        return _validated(
            {
                "name": name,
                "job": job,
                "search_space": dict(search_space),
                "objective": {"direction": direction, **objective},
                "n_trials": n_trials,
                "parallel": parallel,
                "sampler": {"type": sampler} if isinstance(sampler, str) else dict(sampler),
                "pruner": {"type": pruner} if isinstance(pruner, str) else pruner,
            }
        )


def _validated(data: dict[str, Any]) -> StudySpec:
    from pydantic import ValidationError

    try:
        return StudySpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid study: {format_validation_error(err)}") from None


@dataclass
class _Active:
    """A trial whose job runs: Optuna's handle and the steps already reported to the pruner."""

    trial: optuna.trial.Trial
    job: str
    reported: set[int] = field(default_factory=set)


class _StudyRun:
    """One run of a study in this process: ask, submit, watch, prune, tell, until n_trials."""

    def __init__(
        self, client: OptimizerClient, checked: CheckedStudy, log: Callable[[str], None], polling_interval: float
    ):
        self.client = client
        self.polling_interval = polling_interval
        self.backend = client.backend
        self.checked = checked
        self.spec = checked.spec
        self.log = log
        self.base_trainer = self.spec.job.trainer.model_dump(mode="json", exclude_unset=True)

    def run(self) -> StudyResult:
        study = self._study()
        distributions = {path: _to_optuna(d) for path, d in self.checked.space.items()}
        parallel = self._parallel()
        active = {item.trial.number: item for item in self._adopt(study)}
        while True:
            while len(active) < parallel and _counted(study) < self.spec.n_trials:
                if self.spec.sampler.seed is not None and self.spec.sampler.type != "grid":
                    # Seeded per trial number, so a resumed study draws what an uninterrupted one would
                    # have (a sampler seeded once would repeat its first draws after each resume). The
                    # grid sampler keeps one seed: it orders the grid by it and finds visited points in
                    # the storage.
                    number = len(study.get_trials(deepcopy=False))
                    study.sampler = _sampler(self.spec, self.checked.space, self.spec.sampler.seed + number)
                item = self._start(study, study.ask(distributions))
                active[item.trial.number] = item
            if not active:
                break
            time.sleep(self.polling_interval)
            for number, item in list(active.items()):
                if self._poll(study, item):
                    del active[number]
        return self.client.get_study(self.spec.name)

    def _study(self) -> optuna.Study:
        import optuna

        spec = self.spec
        definition = json.dumps(
            {
                "job": spec.job.model_dump(mode="json"),
                "search_space": {path: describe(d) for path, d in self.checked.space.items()},
                "objective": spec.objective.model_dump(mode="json"),
            },
            sort_keys=True,
        )
        study = optuna.create_study(
            study_name=spec.name,
            storage=self.client._storage(),
            direction=spec.objective.direction,
            sampler=_sampler(spec, self.checked.space, spec.sampler.seed),
            pruner=_pruner(spec),
            load_if_exists=True,
        )
        stored = study.user_attrs.get(DEFINITION_ATTR)
        if stored is None:
            study.set_user_attr(DEFINITION_ATTR, definition)
            study.set_user_attr("n_trials", spec.n_trials)
        elif stored != definition:
            raise ConfigError(
                f"name: study {spec.name!r} already exists with another base job, search space or objective; "
                "choose another name to start a new study"
            )
        else:
            study.set_user_attr("n_trials", spec.n_trials)
        return study

    def _parallel(self) -> int:
        limit = self.backend.concurrent_job_limit(self.spec.job)
        if limit is not None and limit < self.spec.parallel:
            self.log(f"running {limit} trial(s) at once: this machine has room for {limit} job(s) like this one")
            return limit
        return self.spec.parallel

    def _adopt(self, study: optuna.Study) -> list[_Active]:
        """Trials a stopped run left running: follow their jobs (still running or ended meanwhile)."""
        import optuna

        adopted = []
        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            name = frozen.user_attrs.get(JOB_ATTR)
            trial = optuna.trial.Trial(study, frozen._trial_id)
            try:
                self.backend.get_job(name) if name else None
            except JobNotFoundError:
                name = None
            if name is None:
                trial.set_user_attr(REASON_ATTR, NOT_SUBMITTED)
                trial.set_user_attr(MESSAGE_ATTR, "the tuning process stopped before its job was submitted")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self.log(f"trial {frozen.number}: following job {name}, still running from an earlier run")
            adopted.append(_Active(trial, name, set(frozen.intermediate_values)))
        return adopted

    def _start(self, study: optuna.Study, trial: optuna.trial.Trial) -> _Active:
        import optuna

        name = f"{self.spec.name}-{trial.number}"
        trial.set_user_attr(JOB_ATTR, name)
        try:
            job_spec = self._trial_spec(name, trial.params)
            self.backend.submit(job_spec)
        except KubetuneError as err:
            trial.set_user_attr(REASON_ATTR, NOT_SUBMITTED)
            trial.set_user_attr(MESSAGE_ATTR, str(err))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise type(err)(f"trial {trial.number} ({_params_text(trial.params)}): {err}") from None
        trial.set_user_attr(OUTPUT_ATTR, self._output_of(name))
        self.log(f"trial {trial.number}: started job {name} ({_params_text(trial.params)})")
        return _Active(trial, name)

    def _trial_spec(self, name: str, params: Mapping[str, Any]) -> JobSpec:
        job = self.spec.job
        values = {path: _choice_value(self.checked.space[path], value) for path, value in params.items()}
        update: dict[str, Any] = {"name": name, "trainer": trainer_with(self.base_trainer, values)}
        if job.output_dir is not None:
            update["output_dir"] = str(Path(job.output_dir) / name)
        return job.model_copy(update=update)

    def _output_of(self, name: str) -> str | None:
        job = self.backend.get_job(name)
        if job.output_dir is not None:
            return str(job.output_dir)
        locations = self.backend.get_job_outputs(name).locations
        return locations[0] if locations else None

    def _poll(self, study: optuna.Study, item: _Active) -> bool:
        """Feed the pruner, prune or score the trial; True once it is told to Optuna."""

        trial, metric = item.trial, self.spec.objective.metric
        try:
            job = self.backend.get_job(item.job)
        except JobNotFoundError:
            return self._fail(study, item, "JobNotFound", f"job {item.job} disappeared before it finished")
        records = _progress_records(job)
        latest = None
        for record in records:
            value = metric_value(record, metric)
            step = record.get("step")
            if value is None or step is None or step in item.reported:
                continue
            item.reported.add(step)
            trial.report(value, step)
            latest = (step, value)
        trained = bool(records) and records[-1].get("step", 0) >= records[-1].get("total_steps", math.inf)
        if not job.status.is_terminal:
            # Decided on the newest value only, and never once the trial has trained to its last step
            # (it is exporting; it is scored instead).
            if self.spec.pruner is not None and latest is not None and not trained and trial.should_prune():
                return self._prune(study, item, *latest)
            return False
        if job.status != JobStatus.COMPLETE:
            return self._fail(study, item, job.reason or job.status.value, job.message or "")
        try:
            value = self._score(job, records)
        except ConfigError:
            self._fail(study, item, "MetricMissing", f"{metric} is not in the trial's progress records")
            raise
        except Exception as err:  # a user objective function's own error
            return self._fail(study, item, "ObjectiveError", f"{type(err).__name__}: {err}")
        study.tell(trial, value)
        self.log(f"trial {trial.number}: complete, {self.spec.objective.function or metric} = {value:.6g}")
        return True

    def _prune(self, study: optuna.Study, item: _Active, step: int, value: float) -> bool:
        import optuna

        message = f"{self.spec.pruner.type} pruner at step {step}: {self.spec.objective.metric} {value:.4g}"
        try:
            self.backend.cancel_job(item.job, PRUNED_REASON, message)
        except ConfigError:
            if self.backend.get_job(item.job).status.is_terminal:
                return False  # it ended meanwhile: scored at the next poll
            # A backend that cannot cancel (Kubernetes: a TrainJob has no cancelled state): the job is
            # deleted, its outputs kept; the reason stays in the study.
            self.backend.delete_job(item.job)
        item.trial.set_user_attr(REASON_ATTR, PRUNED_REASON)
        item.trial.set_user_attr(MESSAGE_ATTR, message)
        study.tell(item.trial, state=optuna.trial.TrialState.PRUNED)
        self.log(f"trial {item.trial.number}: pruned ({message})")
        return True

    def _score(self, job: Job, records: list[dict[str, Any]]) -> float:
        function = self.checked.function
        if function is not None:
            return float(function(job))
        metric = self.spec.objective.metric
        for record in reversed(records):
            value = metric_value(record, metric)
            if value is not None:
                return value
        raise ConfigError(
            f"objective.metric: trial job {job.name} finished without reporting {metric!r} "
            f"(its records have: {', '.join(_record_names(records)) or 'nothing'})"
        )

    def _fail(self, study: optuna.Study, item: _Active, reason: str, message: str) -> bool:
        import optuna

        item.trial.set_user_attr(REASON_ATTR, reason)
        item.trial.set_user_attr(MESSAGE_ATTR, message)
        study.tell(item.trial, state=optuna.trial.TrialState.FAIL)
        self.log(f"trial {item.trial.number}: failed ({reason}: {message})")
        return True


def metric_value(record: Mapping[str, Any], metric: str) -> float | None:
    """``metric`` in one progress record: a top-level value (``eval_loss``) or one inside a section of
    it (``objective``, an evaluation section); None when the record does not have it."""
    candidates = [record.get(metric)]
    candidates += [section.get(metric) for section in record.values() if isinstance(section, Mapping)]
    for value in candidates:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _record_names(records: list[dict[str, Any]]) -> list[str]:
    names: set[str] = set()
    for record in records:
        for key, value in record.items():
            if isinstance(value, Mapping):
                names.update(value)
            elif value is not None:
                names.add(key)
    return sorted(names)


def _progress_records(job: Job) -> list[dict[str, Any]]:
    """Every progress record of the job when its output folder is on this machine (local backend),
    else the latest one the backend reports (Kubernetes: the TrainJob's status)."""
    from kubetune.backends.local.metrics_file import complete_records
    from kubetune.contracts.run_dir import RunDir

    if job.run_dir is not None:
        metrics = RunDir(job.run_dir).metrics_file
        if metrics.exists():
            return complete_records(metrics)[0]
    return [job.progress.to_json()] if job.progress is not None else []


def _counted(study: optuna.Study) -> int:
    """Trials that count toward n_trials: all but those whose job was never submitted."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get(REASON_ATTR) != NOT_SUBMITTED)


def _to_optuna(distribution: Distribution) -> optuna.distributions.BaseDistribution:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, LogUniform):
        return FloatDistribution(distribution.low, distribution.high, log=True)
    if isinstance(distribution, Uniform):
        return FloatDistribution(distribution.low, distribution.high, step=distribution.step)
    if isinstance(distribution, IntRange):
        return IntDistribution(distribution.low, distribution.high, step=distribution.step)
    values = [json.dumps(v) if isinstance(v, list | dict) else v for v in distribution.values]
    return CategoricalDistribution(values)


def _choice_value(distribution: Distribution, stored: Any) -> Any:
    """The value a trial's parameter stands for: a list or mapping choice is stored as its JSON text."""
    if not isinstance(distribution, Choice):
        return stored
    return dict(zip(_to_optuna(distribution).choices, distribution.values, strict=True)).get(stored, stored)


def _sampler(spec: StudySpec, space: Mapping[str, Distribution], seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    if spec.sampler.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler.type == "grid":
        grid = {}
        for path, d in space.items():
            if isinstance(d, Choice):
                grid[path] = list(_to_optuna(d).choices)
            else:
                count = round((d.high - d.low) / d.step) + 1
                grid[path] = [d.low + i * d.step for i in range(count)]
        return _grid_sampler(grid, seed)
    return optuna.samplers.TPESampler(seed=seed)


def _grid_sampler(grid: dict[str, list[Any]], seed: int | None) -> optuna.samplers.BaseSampler:
    """Optuna's grid sampler without its end-of-grid ``Study.stop()``, which works only inside
    ``Study.optimize`` (here ``n_trials`` bounds the study; a grid smaller than it repeats points)."""
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            return None

    return GridSampler(grid, seed=seed)


def _pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    import optuna

    pruner = spec.pruner
    if pruner is None:
        return optuna.pruners.NopPruner()
    if isinstance(pruner, MedianPrunerSpec):
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.n_startup_trials,
            n_warmup_steps=pruner.n_warmup_steps,
            interval_steps=pruner.interval_steps,
        )
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=pruner.min_resource,
        reduction_factor=pruner.reduction_factor,
        min_early_stopping_rate=pruner.min_early_stopping_rate,
    )


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{path}={value:.3g}" if isinstance(value, float) else f"{path}={value}" for path, value in params.items()
    )


def _result(study: optuna.Study) -> StudyResult:
    import optuna

    states = {
        optuna.trial.TrialState.COMPLETE: "complete",
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
    }
    definition = json.loads(study.user_attrs[DEFINITION_ATTR])
    trials = []
    for t in study.get_trials(deepcopy=False):
        end = t.datetime_complete
        steps = sorted(t.intermediate_values)
        trials.append(
            TrialResult(
                number=t.number,
                job=t.user_attrs.get(JOB_ATTR),
                status=states.get(t.state, "running"),
                params={path: _param_value(value) for path, value in t.params.items()},
                value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                last_step=steps[-1] if steps else None,
                last_value=t.intermediate_values[steps[-1]] if steps else None,
                duration_s=(end - t.datetime_start).total_seconds() if end and t.datetime_start else None,
                reason=t.user_attrs.get(REASON_ATTR),
                message=t.user_attrs.get(MESSAGE_ATTR),
                output=t.user_attrs.get(OUTPUT_ATTR),
            )
        )
    complete = [t for t in trials if t.status == "complete"]
    direction = definition["objective"]["direction"]
    best = (min if direction == "minimize" else max)(complete, key=lambda t: t.value) if complete else None
    return StudyResult(
        name=study.study_name,
        metric=definition["objective"].get("function") or definition["objective"]["metric"],
        direction=direction,
        n_trials=int(study.user_attrs.get("n_trials", len(trials))),
        search_space=definition["search_space"],
        trials=trials,
        best=best,
    )


def _param_value(value: Any) -> Any:
    """A categorical value stored as JSON text (a list choice) back as the list."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _draw_plot(result: StudyResult, path: Path) -> Path:
    """``history.png``: the objective by trial (best so far as a line, pruned trials at their last
    reported value) and the objective against each numeric searched parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [p for p in result.search_space if any(isinstance(t.params.get(p), int | float) for t in result.trials)][
        :3
    ]
    fig, axes = plt.subplots(1, 1 + len(numeric), figsize=(5 * (1 + len(numeric)), 4), squeeze=False)
    history = axes[0][0]
    done = [t for t in result.trials if t.status == "complete"]
    pruned = [t for t in result.trials if t.status == "pruned" and t.last_value is not None]
    history.scatter([t.number for t in done], [t.value for t in done], label="complete", color="tab:blue")
    history.scatter(
        [t.number for t in pruned],
        [t.last_value for t in pruned],
        label="pruned (last value)",
        marker="x",
        color="tab:red",
    )
    best_so_far, best = [], None
    for t in sorted(done, key=lambda t: t.number):
        better = best is None or (t.value < best if result.direction == "minimize" else t.value > best)
        best = t.value if better else best
        best_so_far.append((t.number, best))
    if best_so_far:
        history.step(*zip(*best_so_far, strict=False), where="post", color="tab:green", label="best so far")
    history.set_xlabel("trial")
    history.set_ylabel(result.metric)
    history.set_title(f"study {result.name}")
    history.legend()
    for axis, param in zip(axes[0][1:], numeric, strict=False):
        points = [(t.params[param], t.value) for t in done if isinstance(t.params.get(param), int | float)]
        if points:
            axis.scatter(*zip(*points, strict=False), color="tab:blue")
        if result.search_space[param].startswith("loguniform"):
            axis.set_xscale("log")
        axis.set_xlabel(param)
        axis.set_ylabel(result.metric)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
